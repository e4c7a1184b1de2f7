"""Services: one telescope session, the command service, the telemetry hub, the frame pipeline.

Services import the protocol packages (`scopelink.seestar`, `scopelink.simulator`) and nothing
from the transports (`scopelink.web`).
"""
