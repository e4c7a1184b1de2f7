"""Transports: REST, SSE, MJPEG and the browser UI. Thin adapters over the services."""

from pathlib import Path

#: The browser UI's files, served as they are by the app and by the broker.
UI_DIR = Path(__file__).resolve().parent.parent / "ui"
