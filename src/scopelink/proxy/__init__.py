"""The telescope-side proxy (`scopelink proxy`): the same app as `serve` beside the telescope,
paired once to an owner's account on a broker, and reachable from anywhere through the broker's
signaling while media and commands go peer to peer (docs/remote.md)."""
