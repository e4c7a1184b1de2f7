"""scopelink: control a ZWO Seestar smart telescope from a browser and watch it live."""

__version__ = "0.1.0"
