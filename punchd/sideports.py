"""
The extra sockets of a many-port punch (L{punchd.hardnat}), opened and
closed without a log line each.

C{twisted.internet.udp.Port} logs C{"... starting on PORT"} when it binds
and C{"(UDP Port PORT Closed)"} when it closes, whatever its protocol's
C{noisy}: a many-port punch opens 256 sockets and closes 255 of them within
seconds, which buried the peer's own account of the punch under some 500
lines.  The peer says what it does in one line instead (C{"My NAT maps per
destination and bob's does not: probing ... from 256 sockets"}).

L{QuietPort} repeats the two methods of C{udp.Port} that log, without the
log line; C{punchd/test/test_sideports.py} checks that such a port still
binds, carries datagrams and closes, and logs nothing.
"""

from twisted.internet import base, error, udp
from twisted.internet.posixbase import PosixReactorBase


class QuietPort(udp.Port):
    """
    A UDP port that logs neither its start nor its close.
    """

    def _bindSocket(self):
        try:
            skt = self.createInternetSocket()
            skt.bind((self.interface, self.port))
        except OSError as e:
            raise error.CannotListenError(self.interface, self.port, e)
        self._realPortNumber = skt.getsockname()[1]
        self.connected = 1
        self.socket = skt
        self.fileno = self.socket.fileno

    def connectionLost(self, reason=None):
        self._realPortNumber = None
        self.maxThroughput = -1
        base.BasePort.connectionLost(self, reason)
        self.protocol.doStop()
        self.socket.close()
        del self.socket
        del self.fileno
        if hasattr(self, "d"):
            self.d.callback(None)
            del self.d


def quietListenUDP(reactor):
    """
    A C{listenUDP} for the extra sockets: of L{QuietPort}s on a reactor
    whose UDP ports are C{twisted.internet.udp}'s, the reactor's own on any
    other.

    @param reactor: An L{twisted.internet.interfaces.IReactorUDP}, or
        anything else (then L{None}: no extra sockets).
    @return: A function of C{(port, protocol, interface="",
        maxPacketSize=8192)} returning the listening port, or L{None}.
    """
    if not isinstance(reactor, PosixReactorBase):
        return getattr(reactor, "listenUDP", None)

    def listenUDP(port, protocol, interface="", maxPacketSize=8192):
        p = QuietPort(port, protocol, interface, maxPacketSize, reactor)
        p.startListening()
        return p

    return listenUDP
