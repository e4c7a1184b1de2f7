"""NAT topologies in network namespaces for the remote-access tests (see topology.py)."""
