"""The Seestar wire protocol: control (4700/tcp), imaging (4800/tcp) and discovery (4720/udp).

This package knows nothing of the scopelink application; the app imports it, never the reverse.
"""
