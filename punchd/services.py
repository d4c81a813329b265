"""
The service a command's datagram protocol listens with, when the command
binds its UDP port itself.

Under systemd socket activation the protocol listens with
L{punchd.systemd.AdoptedDatagramPort} instead; both name it C{protocol}, as
L{twisted.application.internet.StreamServerEndpointService} names its
C{factory}.
"""

import socket

from twisted.application import internet
from twisted.internet.error import CannotListenError


class DatagramServer(internet.UDPServer):
    """
    A L{internet.UDPServer} that says what it listens with: the port it
    binds in C{privilegedStartService}, the address, and the protocol.
    """

    def __init__(self, port, protocol, interface="", reactor=None):
        """
        @param port: The UDP port to bind; 0 for any free one.
        @param protocol: The L{twisted.internet.protocol.DatagramProtocol}.
        @param interface: The address to bind; C{""} for every IPv4 address,
            C{"::"} for every address of both families (one dual-stack
            socket, C{IPV6_V6ONLY} off whatever the host's default).
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

    def _getPort(self):
        if self.interface != "::":
            return super()._getPort()
        # On "::" the port is dual-stack, taking IPv4 in its mapped form:
        # Linux's default (net.ipv6.bindv6only=0), which a host may change,
        # so the socket says so itself, before it is bound (Linux refuses
        # the option after).  Twisted's listenUDP cannot, so it is adopted.
        reactor = self.reactor
        if reactor is None:
            from twisted.internet import reactor
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            try:
                s.bind(("::", self.port))
            except OSError as e:
                # As listenUDP says it.
                raise CannotListenError("::", self.port, e) from None
            s.setblocking(False)
            # The port has a copy of its own.
            return reactor.adoptDatagramPort(s.fileno(), socket.AF_INET6, self.protocol)
        finally:
            s.close()
