"""
The service a command's datagram protocol listens with, when the command
binds its UDP port itself.

Under systemd socket activation the protocol listens with
L{punchd.systemd.AdoptedDatagramPort} instead; both name it C{protocol}, as
L{twisted.application.internet.StreamServerEndpointService} names its
C{factory}.
"""

from twisted.application import internet


class DatagramServer(internet.UDPServer):
    """
    A L{internet.UDPServer} that says what it listens with: the port it
    binds in C{privilegedStartService}, the address, and the protocol.
    """

    def __init__(self, port, protocol, interface="", reactor=None):
        """
        @param port: The UDP port to bind; 0 for any free one.
        @param protocol: The L{twisted.internet.protocol.DatagramProtocol}.
        @param interface: The address to bind; C{""} for every IPv4 address.
        @param reactor: The L{twisted.internet.interfaces.IReactorUDP};
            by default, the global reactor.
        """
        super().__init__(port, protocol, interface=interface, reactor=reactor)

    @property
    def port(self):
        """
        The UDP port number it binds, as given: 0 for any free one.
        """
        return self.args[0]

    @property
    def protocol(self):
        """
        The L{twisted.internet.protocol.DatagramProtocol} it listens with.
        """
        return self.args[1]

    @property
    def interface(self):
        """
        The address it binds: C{""} for every IPv4 address.
        """
        return self.kwargs["interface"]
