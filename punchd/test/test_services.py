"""
Tests for L{punchd.services}.
"""

import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from punchd.services import DatagramServer
from punchd.testing import Network


class DatagramServerTests(SynchronousTestCase):
    """
    Tests for L{DatagramServer}.
    """

    def test_saysWhatItListensWith(self):
        """
        The port, the protocol and the address are those it was given.
        """
        protocol = DatagramProtocol()
        server = DatagramServer(4000, protocol, interface="::1")
        self.assertEqual(
            (server.port, server.protocol, server.interface), (4000, protocol, "::1")
        )

    def test_everyIPv4AddressByDefault(self):
        """
        Without an interface it binds every IPv4 address.
        """
        self.assertEqual(DatagramServer(0, DatagramProtocol()).interface, "")

    def test_bindsWhenPrivileged(self):
        """
        It binds its port and address with its protocol while privileges
        are still held, and closes it when stopped.
        """
        host = Network().host("192.0.2.10")
        protocol = DatagramProtocol()
        server = DatagramServer(4000, protocol, interface="192.0.2.10", reactor=host)
        server.privilegedStartService()
        port = protocol.transport
        self.assertEqual(
            (port.host, port.port, port.protocol, port.interface, port.listening),
            (host, 4000, protocol, "192.0.2.10", True),
        )
        server.stopService()
        self.assertFalse(port.listening)


class Receiver(DatagramProtocol):
    def __init__(self):
        self.received = defer.Deferred()

    def datagramReceived(self, datagram, address):
        self.received.callback((datagram, address))


class DualStackDatagramServerTests(TestCase):
    """
    Tests for L{DatagramServer} on C{"::"}, with a real socket on loopback.
    """

    def setUp(self):
        try:
            probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        except OSError:
            raise self.skipTest("no IPv6 on this host")
        probe.close()

    async def test_takesIPv4(self):
        """
        Its socket has C{IPV6_V6ONLY} off, whatever the host's default, and
        a datagram from an IPv4 address arrives, from its mapped form.
        """
        receiver = Receiver()
        server = DatagramServer(0, receiver, interface="::", reactor=reactor)
        server.privilegedStartService()
        server.startService()
        self.addCleanup(server.stopService)
        port = receiver.transport
        self.assertEqual(port.socket.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY), 0)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.bind(("127.0.0.1", 0))
        sender.sendto(b"hello", ("127.0.0.1", port.getHost().port))
        datagram, address = await receiver.received
        self.assertEqual(
            (datagram, address[:2]), (b"hello", ("::ffff:127.0.0.1", sender.getsockname()[1]))
        )
