"""
Tests for L{punchd.udpsend}.
"""

import errno

from twisted.internet import error, udp
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages
from punchd.drops import DropCounter
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.udpsend import sender

DESTINATION = ("192.0.2.1", 1)


class FakeSocket:
    """
    A socket whose C{sendto} records, or raises the errors it is given.

    @ivar peer: The address it is connected to, or L{None}.
    """

    def __init__(self, *errors, peer=None):
        self.errors = list(errors)
        self.sent = []
        self.peer = peer

    def sendto(self, datagram, address):
        if self.errors:
            raise OSError(self.errors.pop(0), "fake")
        self.sent.append((datagram, address))
        return len(datagram)

    def getpeername(self):
        if self.peer is None:
            raise OSError(errno.ENOTCONN, "Transport endpoint is not connected")
        return self.peer

    def getsockname(self):
        return ("192.0.2.10", 8080)


class FakeTransport:
    """
    A transport that is not a UDP port, whose C{write} records, or raises
    the errors it is given.
    """

    def __init__(self, *errors):
        self.errors = list(errors)
        self.written = []

    def write(self, datagram, address):
        if self.errors:
            raise OSError(self.errors.pop(0), "fake")
        self.written.append((datagram, address))


def port(*errors, peer=None):
    """
    An unstarted L{udp.Port} with a L{FakeSocket}.
    """
    p = udp.Port(0, DatagramProtocol())
    p.socket = FakeSocket(*errors, peer=peer)
    return p


class SenderTests(SynchronousTestCase):
    """
    Tests for L{sender}.
    """

    def setUp(self):
        self.clock = Clock()
        self.drops = DropCounter(self.clock)

    def test_otherTransport(self):
        """
        A transport that is not a UDP port is written to as usual.
        """
        transport = FakeTransport()
        sender(transport, self.drops)(b"x", DESTINATION)
        self.assertEqual(transport.written, [(b"x", DESTINATION)])

    def test_connectedPort(self):
        """
        A port whose socket is connected is written to as usual.
        """
        p = port(peer=DESTINATION)
        written = []
        p.write = lambda datagram, address: written.append((datagram, address))
        sender(p, self.drops)(b"x", DESTINATION)
        self.assertEqual((written, p.socket.sent), ([(b"x", DESTINATION)], []))

    def test_sendto(self):
        """
        An unconnected port's socket sends the datagram to the address.
        """
        p = port()
        sender(p, self.drops)(b"x", DESTINATION)
        self.assertEqual(p.socket.sent, [(b"x", DESTINATION)])

    def test_interrupted(self):
        """
        An interrupted send is tried again.
        """
        p = port(errno.EINTR)
        sender(p, self.drops)(b"x", DESTINATION)
        self.assertEqual(p.socket.sent, [(b"x", DESTINATION)])

    def test_tooLong(self):
        """
        A datagram too long raises L{error.MessageLengthError}, as
        C{write} does.
        """
        p = port(errno.EMSGSIZE)
        self.assertRaises(error.MessageLengthError, sender(p, self.drops), b"x", DESTINATION)

    def test_refused(self):
        """
        A port unreachable is ignored, as C{write} ignores it.
        """
        p = port(errno.ECONNREFUSED)
        sender(p, self.drops)(b"x", DESTINATION)
        self.assertEqual(p.socket.sent, [])

    def test_otherErrors(self):
        """
        Any other error is raised, as C{write} raises it.
        """
        p = port(errno.ENETUNREACH)
        exc = self.assertRaises(OSError, sender(p, self.drops), b"x", DESTINATION)
        self.assertEqual(exc.errno, errno.ENETUNREACH)

    def test_bufferFull(self):
        """
        A datagram the send buffer has no room for, C{EAGAIN} or
        C{ENOBUFS}, is counted as dropped, not raised, and the next one is
        sent.
        """
        p = port(errno.EAGAIN, errno.ENOBUFS)
        send = sender(p, self.drops)
        for _ in range(3):
            send(b"x", DESTINATION)
        self.assertEqual(dict(self.drops.counts), {"send buffer full": 2})
        self.assertEqual(p.socket.sent, [(b"x", DESTINATION)])

    def test_bufferFullOtherTransport(self):
        """
        A full send buffer is a drop whatever the transport.
        """
        sender(FakeTransport(errno.EAGAIN), self.drops)(b"x", DESTINATION)
        self.assertEqual(dict(self.drops.counts), {"send buffer full": 1})

    def test_bufferFullLoggedAtBoundedRate(self):
        """
        A thousand datagrams dropped at once make one warning, which says
        whom the first was for; the next interval's make one more, which
        counts them all.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        send = sender(port(*[errno.EAGAIN] * 2000), self.drops)
        for _ in range(1000):
            send(b"x", DESTINATION)
        self.clock.advance(10)
        for _ in range(1000):
            send(b"x", DESTINATION)
        warnings = [e for e in events if e["log_format"].startswith("Dropped")]
        self.assertEqual(
            [(e["direction"], e["source"], e["reason"], e["unreported"]) for e in warnings],
            [("to", "192.0.2.1:1", "send buffer full", 1), ("to", "192.0.2.1:1", "send buffer full", 1000)],
        )


class StageManagerSendTests(SynchronousTestCase):
    """
    The stage manager under load, on a real L{udp.Port} whose socket's
    send buffer is full.
    """

    def test_answerDropped(self):
        """
        An answer that the socket has no room for is counted as dropped,
        and the datagram that asked for it is handled without an error.
        """
        clock = Clock()
        server = StageManagerProtocol(clock, Phonebook(10, 60))
        p = udp.Port(8080, server)
        p.socket = FakeSocket(errno.EAGAIN)
        server.makeConnection(p)
        self.addCleanup(server.doStop)
        server.datagramReceived(
            messages.BARE_BINDING_REQUEST + bytes(12), ("203.0.113.5", 4000)
        )
        self.assertEqual(server.drops.counts["send buffer full"], 1)
        self.assertEqual(p.socket.sent, [])
