"""
Realms: the public internet, and the private network behind each NAT.  An
address names one machine in its realm, so two private networks may both
have a 192.168.1.2.
"""

from twisted.internet.abstract import isIPAddress

__all__ = ["Realm"]


class Realm:
    """
    The public internet (no gateway) or the private network behind a NAT.

    @ivar gateway: The L{NAT} this network is behind, or L{None}.
    @ivar nodes: The L{Host}s and L{NAT}s attached, by address.
    """

    def __init__(self, gateway):
        self.gateway = gateway
        self.nodes = {}

    def attach(self, address, node):
        """
        Put a host or NAT on this network.

        @param address: Its IPv4 address here.
        @param node: The L{Host} or L{NAT}.
        @raise ValueError: If the address is not IPv4 or already taken here.
        """
        if not isIPAddress(address):
            raise ValueError(f"{address!r} is not an IPv4 address")
        if address in self.nodes:
            raise ValueError(f"{address} is already taken on {self}")
        self.nodes[address] = node

    def __str__(self):
        if self.gateway is None:
            return "the public internet"
        return f"the network behind {self.gateway}"
