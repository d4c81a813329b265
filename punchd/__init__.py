"""
punchd: UDP NAT hole punching as a Twisted application.

A rendezvous server, the I{stage manager}, keeps a phonebook of peers and
introduces two peers that ask for each other; the peers then punch a direct UDP
path through their NATs and talk without the server.
"""
