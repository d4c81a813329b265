"""
Machines on the simulated network: L{Host}, which is also the reactor
(C{IReactorUDP} and C{IReactorTime}) of the programs running on it.
"""

import errno
import os

from zope.interface import implementer

from twisted.internet import error
from twisted.internet.interfaces import IReactorTime, IReactorUDP

from punchd.testing.traffic import DELIVERED, NOT_CONNECTED, PORT_UNREACHABLE
from punchd.testing.udp import FakeUDPPort

__all__ = ["EPHEMERAL_PORTS", "Host"]

#: The ports a host picks from when asked to listen on port 0, in order.
EPHEMERAL_PORTS = range(32768, 61000)


@implementer(IReactorUDP, IReactorTime)
class Host:
    """
    A machine with one address, and the reactor of the programs on it.

    Make hosts with L{Network.host}.

    Its time is the network clock's.  L{getDelayedCalls} lists only the
    calls made through this host's L{callLater}, as a real reactor on
    that machine would, so a protocol given this host as its reactor can be
    checked for leftover timers whatever else runs on the network.

    @ivar network: The L{Network}.
    @ivar address: Its IPv4 address in its realm.
    @ivar behind: The L{NAT} it is behind, or L{None} if it is on the public
        internet.
    @ivar latency: The one-way latency of its link, in seconds; change it to
        change the link from then on.
    @ivar loss: The probability that its link drops a datagram (1 takes the
        host off the network); change it to change the link from then on.
    """

    def __init__(self, network, address, behind, latency, loss, realm):
        self.network = network
        self.address = address
        self.behind = behind
        self.latency = latency
        self.loss = loss
        self._realm = realm
        self._ports = {}
        self._calls = set()
        self._nextEphemeral = EPHEMERAL_PORTS[0]

    def __repr__(self):
        where = "" if self.behind is None else f" behind {self.behind.publicAddress}"
        return f"<Host {self.address}{where}>"

    # IReactorUDP

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        """
        Listen on a UDP port and connect C{protocol} to it, as the real
        reactor does: C{protocol.makeConnection} runs, so C{startProtocol}
        does, before this returns.

        @param port: The port number; 0 for the next free one of
            L{EPHEMERAL_PORTS}.
        @param protocol: A L{twisted.internet.protocol.DatagramProtocol}.
        @param interface: C{""} or C{"0.0.0.0"} or the host's address for
            IPv4; C{"::"} for a dual-stack port.
        @param maxPacketSize: The longest datagram the protocol is given;
            longer ones are cut short, as C{recvfrom} does.
        @return: The L{FakeUDPPort}.
        @raise twisted.internet.error.CannotListenError: If the port is
            taken or out of range, or the host has no such interface.
        """
        if interface in ("", "0.0.0.0", self.address):
            ipv6 = False
        elif interface == "::":
            ipv6 = True
        else:
            raise error.CannotListenError(
                interface, port, _osError(errno.EADDRNOTAVAIL)
            )
        if port == 0:
            port = self._ephemeralPort(interface)
        elif not 0 < port < 65536:
            raise error.CannotListenError(
                interface, port, OverflowError("port must be 0-65535")
            )
        elif port in self._ports:
            raise error.CannotListenError(interface, port, _osError(errno.EADDRINUSE))
        udpPort = FakeUDPPort(self, port, protocol, interface, maxPacketSize, ipv6)
        self._ports[port] = udpPort
        protocol.makeConnection(udpPort)
        return udpPort

    def _ephemeralPort(self, interface):
        first, last = EPHEMERAL_PORTS[0], EPHEMERAL_PORTS[-1]
        for _ in EPHEMERAL_PORTS:
            candidate = self._nextEphemeral
            self._nextEphemeral = candidate + 1 if candidate < last else first
            if candidate not in self._ports:
                return candidate
        raise error.CannotListenError(interface, 0, _osError(errno.EADDRINUSE))

    # IReactorTime

    def seconds(self):
        """
        @return: The network clock's time.
        """
        return self.network.clock.seconds()

    def callLater(self, delay, callable, *args, **kw):
        """
        Schedule a call on the network clock.

        @return: The L{twisted.internet.interfaces.IDelayedCall}.
        """
        call = self.network.clock.callLater(delay, callable, *args, **kw)
        self._calls = {c for c in self._calls if c.active()}
        self._calls.add(call)
        return call

    def getDelayedCalls(self):
        """
        @return: The pending calls made through this host's L{callLater},
            in the order they will run.
        """
        return [c for c in self.network.clock.getDelayedCalls() if c in self._calls]

    # The network

    def _receive(self, at, packet):
        port = self._ports.get(packet.dst[1])
        if port is None:
            self.network._record(at, packet, PORT_UNREACHABLE, self)
        elif port._connectedTo is not None and packet.src != port._connectedTo:
            self.network._record(at, packet, NOT_CONNECTED, self)
        else:
            self.network._record(at, packet, DELIVERED, self, (self.address, port.port))
            port._deliver(packet)


def _osError(code):
    return OSError(code, os.strerror(code))
