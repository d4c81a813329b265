"""
Tests for L{punchd.udpsend}.
"""

import errno

from twisted.internet import error, udp
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from punchd.testing import Network
from punchd.udpsend import sender


class FakeSocket:
    """
    A socket whose C{sendto} records, or raises the errors it is given.
    """

    def __init__(self, *errors):
        self.errors = list(errors)
        self.sent = []

    def sendto(self, datagram, address):
        if self.errors:
            raise OSError(self.errors.pop(0), "fake")
        self.sent.append((datagram, address))
        return len(datagram)


def port(*errors):
    """
    An unstarted L{udp.Port} with a L{FakeSocket}.
    """
    p = udp.Port(0, DatagramProtocol())
    p.socket = FakeSocket(*errors)
    return p


class SenderTests(SynchronousTestCase):
    """
    Tests for L{sender}.
    """

    def test_otherTransport(self):
        """
        A transport that is not a UDP port is written to as usual.
        """
        transport = Network().host("192.0.2.1").listenUDP(1, DatagramProtocol())
        self.assertEqual(sender(transport), transport.write)

    def test_connectedPort(self):
        """
        A connected port is written to as usual.
        """
        p = port()
        p._connectedAddr = ("192.0.2.1", 1)
        self.assertEqual(sender(p), p.write)

    def test_sendto(self):
        """
        An unconnected port's socket sends the datagram to the address.
        """
        p = port()
        sender(p)(b"x", ("192.0.2.1", 1))
        self.assertEqual(p.socket.sent, [(b"x", ("192.0.2.1", 1))])

    def test_interrupted(self):
        """
        An interrupted send is tried again.
        """
        p = port(errno.EINTR)
        sender(p)(b"x", ("192.0.2.1", 1))
        self.assertEqual(p.socket.sent, [(b"x", ("192.0.2.1", 1))])

    def test_tooLong(self):
        """
        A datagram too long raises L{error.MessageLengthError}, as
        C{write} does.
        """
        p = port(errno.EMSGSIZE)
        self.assertRaises(error.MessageLengthError, sender(p), b"x", ("192.0.2.1", 1))

    def test_refused(self):
        """
        A port unreachable is ignored, as C{write} ignores it.
        """
        p = port(errno.ECONNREFUSED)
        sender(p)(b"x", ("192.0.2.1", 1))
        self.assertEqual(p.socket.sent, [])

    def test_otherErrors(self):
        """
        Any other error is raised, as C{write} raises it.
        """
        p = port(errno.EAGAIN)
        exc = self.assertRaises(OSError, sender(p), b"x", ("192.0.2.1", 1))
        self.assertEqual(exc.errno, errno.EAGAIN)
