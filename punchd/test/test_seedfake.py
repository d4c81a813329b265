"""
Tests for L{punchd.test.seedfake}: the stand-ins behave on the wire as
C{shared/seed/original-programs.md} says the original programs do.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from punchd.test.seedfake import FakeTestClient, FakeTestServer
from punchd.testing import Network

SERVER = ("192.0.2.10", 8080)


class Recorder(DatagramProtocol):
    def __init__(self):
        self.datagrams = []

    def datagramReceived(self, datagram, address):
        self.datagrams.append((datagram, address))


class FakeTestServerTests(SynchronousTestCase):
    """
    The stand-in for the original C{test-server}.
    """

    def setUp(self):
        self.network = Network()
        self.server = FakeTestServer()
        self.network.host(SERVER[0]).listenUDP(SERVER[1], self.server)

    def register(self, name, host="203.0.113.1", port=5000):
        recorder = Recorder()
        transport = self.network.host(host).listenUDP(port, recorder)
        transport.write(name, SERVER)
        self.network.advance(0)
        return recorder, transport

    def test_answersEverySlotInOrder(self):
        """
        Each registration is answered with one datagram per filled slot, in
        slot order.
        """
        self.register(b"alice", "203.0.113.1")
        bob, _ = self.register(b"bob\n", "203.0.113.2")
        self.assertEqual(
            [d for d, _ in bob.datagrams],
            [b"0,2,alice,203.0.113.1,5000\n", b"1,2,bob,203.0.113.2,5000\n"],
        )

    def test_knownNameOverwritten(self):
        """
        A known name keeps its slot and takes the new address.
        """
        self.register(b"alice", "203.0.113.1")
        alice, _ = self.register(b"alice", "203.0.113.9")
        self.assertEqual([d for d, _ in alice.datagrams], [b"0,1,alice,203.0.113.9,5000\n"])

    def test_roundRobin(self):
        """
        The 17th name overwrites the oldest slot.
        """
        for i in range(16):
            self.register(f"n{i}".encode(), f"203.0.113.{i + 1}")
        last, _ = self.register(b"late", "203.0.113.99")
        lines = [d for d, _ in last.datagrams]
        self.assertEqual(len(lines), 16)
        self.assertEqual(lines[0], b"0,16,late,203.0.113.99,5000\n")

    def test_prints(self):
        """
        It prints each request and the table after it.
        """
        self.register(b"alice", "203.0.113.1")
        self.assertIn(
            "Client from 203.0.113.1 : 5000 sent: alice\n"
            "Adding client #0 to table of clients.\n"
            "0,1,alice,203.0.113.1,5000\n",
            self.server.transcript,
        )


class FakeTestClientTests(SynchronousTestCase):
    """
    The stand-in for the original C{test-client}.
    """

    def setUp(self):
        self.network = Network()
        self.server = Recorder()
        self.serverHost = self.network.host(SERVER[0])
        self.serverPort = self.serverHost.listenUDP(SERVER[1], self.server)
        self.client = FakeTestClient(self.network.clock, SERVER, "alice", "bob")
        self.network.host("203.0.113.1").listenUDP(5000, self.client)

    def test_registersEvery30Attempts(self):
        """
        It registers at once, then after every 30 receive attempts: every
        30 s when nothing arrives.
        """
        self.network.advance(65)
        times = [d.sentAt for d in self.network.traffic if d.data == b"alice"]
        self.assertEqual(times, [0, 30, 60])

    def test_locatesContactAndSends(self):
        """
        A line from the server naming the contact makes it send its direct
        message there after every receive attempt, a second apart.
        """
        bob = Recorder()
        self.network.host("203.0.113.7").listenUDP(6000, bob)
        self.serverPort.write(b"1,2,bob,203.0.113.7,6000\n", ("203.0.113.1", 5000))
        self.network.advance(4.5)
        self.assertEqual(
            bob.datagrams,
            [(b"This is a direct P2P message from alice to bob", ("203.0.113.1", 5000))] * 2,
        )
        self.assertIn("Located bob!", self.client.transcript)

    def test_linesOnlyFromServer(self):
        """
        A line from another port of the server's host is a peer message, not
        a phonebook entry.
        """
        other = self.serverHost.listenUDP(8081, Recorder())
        other.write(b"1,2,bob,203.0.113.7,6000\n", ("203.0.113.1", 5000))
        self.network.advance(1)
        self.assertIsNone(self.client.contact)
        self.assertIn(
            "We received a peer message of len 25 from 192.0.2.10,8081 ->>\n"
            "1,2,bob,203.0.113.7,6000\n",
            self.client.transcript,
        )

    def test_trafficHastensRegistration(self):
        """
        Every datagram counts as a receive attempt, so traffic brings the
        next registration sooner.
        """
        sender = self.network.host("203.0.113.8").listenUDP(7000, Recorder())
        for _ in range(40):
            sender.write(b"hi", ("203.0.113.1", 5000))
        self.network.advance(1)
        registrations = [d.sentAt for d in self.network.traffic if d.data == b"alice"]
        self.assertEqual(registrations, [0, 0])
