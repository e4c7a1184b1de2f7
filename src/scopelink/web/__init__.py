"""Transports: REST, SSE, MJPEG and the browser UI. Thin adapters over the services."""
