"""WebRTC media: display frames encoded once per quality tier and codec, fanned out to peers.

Owns the encoders (`encoder.TierEncoder`: one libx264 context per tier, or a libvpx one (`vp8`)
for browsers without H.264, keyframes on demand, bitrate changeable while running) and the
tracks that hand their packets to aiortc (`track.EncodedVideoTrack`: a cursor into a tier's
fan-out, no queue, keyframe-gated skipping).

It knows nothing of the web layer: it imports only aiortc/PyAV, `scopelink.media.latest`,
`scopelink.framestamp` and the frame pipeline's `DisplayFrame` type, so a telescope-side proxy
can reuse it as is. Peers and their lifecycle are in `peer` and `sessions`, adaptive bitrate in
`adapt`; signaling lives in the web layer.
"""
