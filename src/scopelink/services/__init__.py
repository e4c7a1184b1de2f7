"""Services: one telescope session, the command service, the telemetry hub, the frame pipeline.

Services import the protocol packages (`scopelink.seestar`) and nothing from the transports
(`scopelink.web`) or the simulator (an entry point starts that: `scopelink.embedded`), so a
telescope-side proxy carries them without either.
"""
