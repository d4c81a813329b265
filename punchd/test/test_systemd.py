"""
Tests for L{punchd.systemd}, socket activation of UDP ports, and for
C{punch-server --systemd-socket}.
"""

import os
import socket

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.python import usage
from twisted.python.systemd import ListenFDs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from punchd import server_tap
from punchd.server import StageManagerProtocol
from punchd.systemd import AdoptedDatagramPort, InheritedSocket, inheritedDatagramSocket


def boundSocket(testCase, kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """
    A socket bound to a free port of C{host}, closed when the test ends.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, kind)
    testCase.addCleanup(s.close)
    s.bind((host, 0))
    return s


class InheritedDatagramSocketTests(SynchronousTestCase):
    """
    Tests for L{inheritedDatagramSocket}.
    """

    def setUp(self):
        self.udp = boundSocket(self)
        self.tcp = boundSocket(self, socket.SOCK_STREAM)
        self.listenFDs = ListenFDs(
            [self.tcp.fileno(), self.udp.fileno()], ("web", "punch-server")
        )

    def test_byName(self):
        """
        The socket is found by its name, with its family and address.
        """
        self.assertEqual(
            inheritedDatagramSocket(self.listenFDs, "punch-server"),
            InheritedSocket(self.udp.fileno(), socket.AF_INET, self.udp.getsockname()),
        )

    def test_ipv6(self):
        """
        An IPv6 socket's address is its host and port.
        """
        udp6 = boundSocket(self, host="::1")
        listenFDs = ListenFDs([udp6.fileno()], ("punch-server",))
        found = inheritedDatagramSocket(listenFDs, "punch-server")
        self.assertEqual(
            (found.family, found.address), (socket.AF_INET6, udp6.getsockname()[:2])
        )

    def test_leftOpen(self):
        """
        Looking at the socket leaves it open.
        """
        inheritedDatagramSocket(self.listenFDs, "punch-server")
        self.assertEqual(self.udp.getsockname()[0], "127.0.0.1")

    def test_missing(self):
        """
        A name systemd did not pass is an error that says which it did.
        """
        e = self.assertRaises(ValueError, inheritedDatagramSocket, self.listenFDs, "other")
        self.assertEqual(
            str(e), "systemd passed no socket named 'other' (it passed: punch-server, web)"
        )
        e = self.assertRaises(ValueError, inheritedDatagramSocket, ListenFDs([], ()), "other")
        self.assertEqual(str(e), "systemd passed no socket named 'other' (it passed: none)")

    def test_notUDP(self):
        """
        A stream socket is an error.
        """
        e = self.assertRaises(ValueError, inheritedDatagramSocket, self.listenFDs, "web")
        self.assertEqual(str(e), "the socket named 'web' is not a UDP socket")


class Receiver(DatagramProtocol):
    def __init__(self):
        self.received = defer.Deferred()

    def datagramReceived(self, datagram, address):
        self.received.callback((datagram, address))


class AdoptedDatagramPortTests(TestCase):
    """
    Tests for L{AdoptedDatagramPort}, with real sockets.
    """

    async def test_waitingDatagram(self):
        """
        A datagram that was waiting in the socket before the service
        started is received once it has; the inherited descriptor is closed
        once adopted, and the socket when the service stops.
        """
        sender = boundSocket(self)
        inherited = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        inherited.bind(("127.0.0.1", 0))
        address = inherited.getsockname()
        sender.sendto(b"hello", address)
        fileno = inherited.detach()
        inode = os.fstat(fileno).st_ino
        receiver = Receiver()
        service = AdoptedDatagramPort(
            InheritedSocket(fileno, socket.AF_INET, address), receiver, reactor
        )
        service.privilegedStartService()
        service.startService()
        self.assertEqual(await receiver.received, (b"hello", sender.getsockname()))
        await service.stopService()
        try:
            stillOpen = os.fstat(fileno).st_ino == inode
        except OSError:
            stillOpen = False
        self.assertFalse(stillOpen, "the inherited descriptor is left open")
        again = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(again.close)
        again.bind(address)  # The port is free: the socket is closed.


class ServerSystemdSocketTests(SynchronousTestCase):
    """
    C{punch-server --systemd-socket}.
    """

    def parse(self, argv, listenFDs):
        options = server_tap.Options(listenFDs=listenFDs)
        options.parseOptions(argv)
        return options

    def test_socketsAddress(self):
        """
        The port and interface are the socket's, and the stage manager
        listens on it.
        """
        udp = boundSocket(self)
        host, port = udp.getsockname()
        options = self.parse(
            ["--systemd-socket", "punch-server", "--port", "1"],
            ListenFDs([udp.fileno()], ("punch-server",)),
        )
        self.assertEqual(
            (options["systemd-socket"], options["interface"], options["port"]),
            (InheritedSocket(udp.fileno(), socket.AF_INET, (host, port)), host, port),
        )
        service = server_tap.makeService(options, reactor=Clock())
        self.assertIsInstance(service, AdoptedDatagramPort)
        self.assertIsInstance(service.protocol, StageManagerProtocol)
        self.assertEqual(service.inherited, options["systemd-socket"])

    def test_discovery(self):
        """
        NAT behaviour discovery names the socket's address and binds its
        alternate port itself.
        """
        udp = boundSocket(self)
        host, port = udp.getsockname()
        options = self.parse(
            ["--systemd-socket", "punch-server", "--alternate-port", "3479"],
            ListenFDs([udp.fileno()], ("punch-server",)),
        )
        top = server_tap.makeService(options, reactor=Clock())
        [primary, alternate] = top
        self.assertEqual(primary.protocol.discovery.addresses[(0, 0)], (host, port))
        self.assertEqual((alternate.port, alternate.interface), (3479, host))

    def test_errorsNameTheOption(self):
        """
        A name systemd did not pass, or a socket that is not UDP, is a usage
        error naming the option.
        """
        tcp = boundSocket(self, socket.SOCK_STREAM)
        listenFDs = ListenFDs([tcp.fileno()], ("web",))
        cases = [
            (
                "punch-server",
                "--systemd-socket: systemd passed no socket named 'punch-server'"
                " (it passed: web)",
            ),
            ("web", "--systemd-socket: the socket named 'web' is not a UDP socket"),
        ]
        for name, message in cases:
            argv = ["--systemd-socket", name]
            e = self.assertRaises(usage.UsageError, self.parse, argv, listenFDs)
            self.assertEqual(str(e), message)
