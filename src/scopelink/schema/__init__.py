"""The app's own message schema: commands, telescope state, operations and errors.

One source of truth for every transport (REST, SSE, later the WebRTC data channel) and for the
browser's generated types (`scopelink.schema.export`). Imports nothing from services or transports.
"""
