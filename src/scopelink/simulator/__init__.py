"""A simulated Seestar that speaks the real wire protocol on 4700/tcp, 4800/tcp and 4720/udp."""
