"""
The UDP ports of simulated hosts: L{FakeUDPPort}, the C{IUDPTransport} of a
protocol listening on a L{punchd.testing.Host}.
"""

from zope.interface import implementer

from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IUDPTransport
from twisted.logger import Logger

__all__ = ["FakeUDPPort"]

#: The largest UDP payload IPv4 can carry.
_MAX_DATAGRAM = 65507


@implementer(IUDPTransport)
class FakeUDPPort:
    """
    A UDP port of a L{Host}: the transport of the protocol listening on it.

    Make ports with L{Host.listenUDP}.

    L{write} sends the datagram on its way over the network's clock.  A
    protocol that raises an exception from C{datagramReceived} has it logged,
    as the real reactor does, and trial fails the test for it.

    @ivar host: The L{Host}.
    @ivar port: The port number.
    @ivar protocol: The protocol listening.
    @ivar interface: The interface it was asked to listen on.
    @ivar maxPacketSize: The longest datagram the protocol is given.
    @ivar listening: Whether it still listens: L{False} after
        L{stopListening}.
    """

    log = Logger()

    def __init__(self, host, port, protocol, interface, maxPacketSize, ipv6):
        self.host = host
        self.port = port
        self.protocol = protocol
        self.interface = interface
        self.maxPacketSize = maxPacketSize
        self.listening = True
        self._ipv6 = ipv6
        self._closed = False
        self._connected = None
        self._connectedTo = None
        self._broadcastAllowed = False

    def __repr__(self):
        return f"<FakeUDPPort {self.host.address}:{self.port}>"

    def write(self, packet, addr=None):
        """
        Send a datagram.

        After L{stopListening} has finished, the datagram is dropped, as
        L{SENDER_CLOSED}.

        @param packet: The datagram.
        @type packet: L{bytes}
        @param addr: The C{(host, port)} to send it to: an IPv4 address, or
            an IPv6 one on a port listening on C{"::"}; may be L{None} on a
            connected port.
        @raise TypeError: If C{packet} is not L{bytes}.
        @raise ValueError: If C{addr} is missing on an unconnected port, or
            not the connected address on a connected one.
        @raise twisted.internet.error.InvalidAddressError: If C{addr} is not
            an IP address of this port's family.
        @raise OverflowError: If the port number is not 0-65535.
        @raise twisted.internet.error.MessageLengthError: If C{packet} is
            longer than IPv4 UDP can carry.
        """
        if not isinstance(packet, bytes):
            raise TypeError(f"a datagram is bytes, not {type(packet).__name__}")
        if self._connected is not None:
            if addr is not None and tuple(addr) != self._connected:
                raise ValueError(
                    f"{self} is connected to {self._connected}, cannot write to {addr}"
                )
            destination = self._connectedTo
        elif addr is None:
            raise ValueError(f"{self} is not connected: write() needs an address")
        else:
            destination = self._toNetwork(addr)
        if len(packet) > _MAX_DATAGRAM:
            raise error.MessageLengthError("message too long")
        self.host.network._send(self, packet, destination)

    def connect(self, host, port):
        """
        Connect: from now on write to C{(host, port)} only, with or without
        giving the address, and receive from it only; datagrams from
        elsewhere are dropped as L{NOT_CONNECTED}.  C{connectionRefused} is
        never called.

        @raise RuntimeError: If already connected.
        @raise twisted.internet.error.InvalidAddressError: If C{host} is not
            an IP address of this port's family.
        """
        if self._connected is not None:
            raise RuntimeError(
                "already connected, reconnecting is not currently supported"
            )
        self._connectedTo = self._toNetwork((host, port))
        self._connected = (host, port)

    def getHost(self):
        """
        @return: The host's address and this port: an L{IPv4Address}, even
            when listening on C{""}; an L{IPv6Address} with the host's
            address as C{"::ffff:a.b.c.d"} on a port listening on C{"::"}.
        """
        if self._ipv6:
            return IPv6Address("UDP", "::ffff:" + self.host.address, self.port)
        return IPv4Address("UDP", self.host.address, self.port)

    def stopListening(self):
        """
        Stop listening, at once: receive nothing more, call
        C{protocol.doStop()} (so C{stopProtocol}, which may still write, as
        it can on a real port), then close and free the port number.

        @return: A L{Deferred} that has fired, or L{None} if it had already
            stopped.
        """
        if not self.listening:
            return None
        self.listening = False
        del self.host._ports[self.port]
        try:
            self.protocol.doStop()
        finally:
            self._closed = True
        return defer.succeed(None)

    def setBroadcastAllowed(self, enabled):
        """
        Remember whether broadcast is allowed; broadcast is not simulated.
        """
        self._broadcastAllowed = bool(enabled)

    def getBroadcastAllowed(self):
        """
        @return: What L{setBroadcastAllowed} last set; at first L{False}.
        """
        return self._broadcastAllowed

    def _toNetwork(self, addr):
        """
        The simulation's form of an address given to this port.
        """
        host, port = addr
        if self._ipv6:
            if not isIPv6Address(host):
                raise error.InvalidAddressError(
                    host, "IPv6 port write() called with IPv4 or broadcast address"
                )
            if host.lower().startswith("::ffff:") and isIPAddress(host[7:]):
                host = host[7:]
        elif not isIPAddress(host):
            if isIPv6Address(host):
                raise error.InvalidAddressError(
                    host, "IPv4 port write() called with IPv6 address"
                )
            raise error.InvalidAddressError(
                host, "write() only accepts IP addresses, not hostnames"
            )
        if not isinstance(port, int):
            raise TypeError(f"a port is an int, not {type(port).__name__}")
        if not 0 <= port <= 65535:
            raise OverflowError("port must be 0-65535")
        return (host, port)

    def _deliver(self, packet):
        source = packet.src
        if self._ipv6:
            source = ("::ffff:" + source[0], source[1])
        try:
            self.protocol.datagramReceived(packet.data[: self.maxPacketSize], source)
        except Exception:
            self.log.failure(
                "Unhandled error in {protocol} receiving a datagram from {source}",
                protocol=self.protocol,
                source=source,
            )
