"""
Tests for the peers' side of the original programs' text protocol:
L{punchd.compat.contact.OriginalContact}, L{punchd.compat.client.SeedPeerProtocol}
and C{punch-peer --seed-compat}, over L{punchd.testing}'s simulated network.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted.internet.address import IPv4Address
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import messages, peer_tap, stun
from punchd.compat import protocol as seedprotocol
from punchd.compat.introductions import encodeOriginalIntroduction
from punchd.compat.peer import OriginalPeers
from punchd.interfaces import IPath, IPathObserver, IPathReceiver, IPeer, IPeerDialect
from punchd.peer import PeerProtocol
from punchd.punching import FAILED, LOST, PUNCHING, STOPPED, UP
from punchd.compat.contact import OriginalContact
from punchd.compat.client import SeedPeerProtocol
from punchd.test.helpers import NAME_SECRET, answerRegistration
from punchd.testing import Network, portRestrictedCone

SERVER = ("192.0.2.10", 8080)
TEXT = b"This is a direct P2P message from bob to alice"


class Recorder(DatagramProtocol):
    """
    Records the datagrams it receives.
    """

    def __init__(self):
        self.datagrams = []

    def datagramReceived(self, datagram, address):
        self.datagrams.append((datagram, address))


@implementer(IPathObserver, IPathReceiver)
class Observer:
    def __init__(self):
        self.messages = []
        self.lost = []
        self.up = []
        self.failed = []

    def pathUp(self, contact):
        self.up.append(contact)

    def pathMoved(self, contact, previous):
        raise AssertionError("an original contact never moves")

    def punchFailed(self, contact):
        self.failed.append(contact)

    def dataReceived(self, contact, data, source):
        self.messages.append((seedprotocol.decodeDirectMessage(data), source))

    def pathLost(self, contact):
        self.lost.append(contact)


class OriginalContactTests(SynchronousTestCase):
    """
    Tests for L{OriginalContact}.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.observer = Observer()
        self.contact = OriginalContact(
            self.clock,
            lambda datagram, address: self.sent.append((self.clock.seconds(), datagram, address)),
            "alice",
            "bob",
            ("203.0.113.7", 6000),
            "This is a direct P2P message from alice to bob",
            self.observer,
            pathTimeout=15,
        )
        self.events = EventLoggingObserver.createWithCleanup(self, self.contact.log.observer)

    def test_givesUpAfterPunchTimeout(self):
        """
        With a punch timeout, an original client not heard by then is sent
        nothing more: whoever spoofed its registration gets a few messages
        sent there, not a stream.
        """
        contact = OriginalContact(
            self.clock,
            lambda datagram, address: self.sent.append(datagram),
            "alice",
            "bob",
            ("203.0.113.7", 6000),
            "hi",
            self.observer,
            punchTimeout=5,
        )
        contact.start()
        self.clock.pump([1] * 30)
        self.assertEqual((len(self.sent), contact.state), (5, FAILED))
        self.assertEqual(self.observer.failed, [contact])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_sendsOnceASecond(self):
        """
        From the start it sends the original's direct message, as text, to
        the peer's address once a second.
        """
        self.contact.start()
        self.clock.pump([1] * 3)
        self.assertEqual(
            self.sent,
            [
                (float(t), b"This is a direct P2P message from alice to bob", ("203.0.113.7", 6000))
                for t in range(4)
            ],
        )
        self.assertEqual(self.contact.state, PUNCHING)

    def test_messageFromPeer(self):
        """
        Text from the peer's address is handed on, and brings the path up.
        """
        self.contact.start()
        self.assertTrue(self.contact.handleText(TEXT, ("203.0.113.7", 6000)))
        self.assertEqual(self.observer.messages, [(TEXT.decode(), ("203.0.113.7", 6000))])
        self.assertEqual(self.contact.state, UP)
        self.assertEqual(self.observer.up, [self.contact])
        verifyObject(IPath, self.contact)
        self.assertEqual(self.contact.getPeer(), IPv4Address("UDP", "203.0.113.7", 6000))
        [event] = [e for e in self.events if "is talking to us" in e["log_format"]]
        self.assertEqual(event["peer"], "bob")

    def test_messageFromElsewhere(self):
        """
        Text from any other address is not the peer's.
        """
        self.contact.start()
        for source in (("203.0.113.7", 6001), ("203.0.113.8", 6000)):
            self.assertFalse(self.contact.handleText(TEXT, source))
        self.assertEqual(self.observer.messages, [])

    def test_keepsTryingUntilHeard(self):
        """
        A peer never heard from is not given up: the original client may
        learn of us only at its next registration, 30 s away.
        """
        self.contact.start()
        self.clock.pump([1] * 60)
        self.assertEqual(self.contact.state, PUNCHING)
        self.assertEqual(self.contact.messagesSent, 61)

    def test_writeOnceUp(self):
        """
        Once up, the contact stops sending the direct message itself, and
        sends what the application writes, as it is.
        """
        self.contact.start()
        self.assertRaises(RuntimeError, self.contact.write, b"too early")
        self.contact.handleText(TEXT, ("203.0.113.7", 6000))
        del self.sent[:]
        self.clock.pump([1] * 3)
        self.assertEqual(self.sent, [])
        self.contact.write(b"hello")
        self.assertEqual(self.sent, [(3.0, b"hello", ("203.0.113.7", 6000))])
        self.assertRaises(ValueError, self.contact.write, b"x" * (seedprotocol.MAX_DATAGRAM + 1))

    def test_silentPeerLost(self):
        """
        A peer that was heard, then is silent for longer than the path
        timeout, is lost, and sending stops.
        """
        self.contact.start()
        self.contact.handleText(TEXT, ("203.0.113.7", 6000))
        self.clock.pump([1] * 16)
        self.assertEqual(self.contact.state, LOST)
        self.assertEqual(self.observer.lost, [self.contact])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self):
        """
        Once stopped, nothing of it remains on the clock and text is no
        longer taken.
        """
        self.contact.start()
        self.contact.stop()
        self.assertEqual(self.contact.state, STOPPED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.contact.handleText(TEXT, ("203.0.113.7", 6000)))

    def test_ignoresStun(self):
        """
        A STUN message is never the original peer's.
        """
        self.contact.start()
        self.assertFalse(self.contact.handle(b"", None, ("203.0.113.7", 6000)))


class SeedPeerTests(SynchronousTestCase):
    """
    Tests for L{SeedPeerProtocol} against a scripted original server.
    """

    def setUp(self):
        self.network = Network(latency=0.125)
        self.server = Recorder()
        self.serverHost = self.network.host(SERVER[0])
        self.serverPort = self.serverHost.listenUDP(SERVER[1], self.server)
        self.nat = self.network.nat("198.51.100.1", **portRestrictedCone())
        self.host = self.network.host("10.0.1.2", behind=self.nat)
        self.peer = SeedPeerProtocol(self.host, SERVER, "alice", "bob", interval=20)
        self.events = EventLoggingObserver.createWithCleanup(self, self.peer.log.observer)
        self.port = self.host.listenUDP(5000, self.peer)

    def registrations(self):
        return [self.network.clock.seconds() for d, _ in self.server.datagrams if d == b"alice"]

    def answer(self, *lines):
        for text in lines:
            self.serverPort.write(text, ("198.51.100.1", 5000))

    def test_registersWithBareName(self):
        """
        It registers with its bare name, at once.
        """
        self.network.advance(0.5)
        self.assertEqual(self.server.datagrams, [(b"alice", ("198.51.100.1", 5000))])

    def test_backoffUntilLocated(self):
        """
        While the contact is not in the phonebook it registers again after
        1, 2, 4, 8 and 16 s, then every interval.
        """
        times = []
        for _ in range(80):
            before = len(self.server.datagrams)
            self.network.advance(0.5)
            if len(self.server.datagrams) > before:
                times.append(self.network.clock.seconds() - 0.5)
        self.assertEqual(times, [0, 1, 3, 7, 15, 31])

    def test_locatesContact(self):
        """
        A phonebook line from the server that names the contact starts the
        direct messages to the address in it.
        """
        self.network.advance(0.5)
        self.answer(b"0,2,alice,198.51.100.1,5000\n", b"1,2,bob,203.0.113.7,6000\n")
        self.network.advance(1)
        self.assertEqual(self.peer.contact.address, ("203.0.113.7", 6000))
        sent = [d for d in self.network.traffic if d.destination == ("203.0.113.7", 6000)]
        self.assertEqual(sent[0].data, b"This is a direct P2P message from alice to bob")
        [event] = [e for e in self.events if "Located" in e["log_format"]]
        self.assertEqual(event["address"], "203.0.113.7:6000")

    def test_registersEveryIntervalOnceLocated(self):
        """
        With its contact found, it registers every interval.
        """
        self.network.advance(0.5)
        self.answer(b"0,1,bob,203.0.113.7,6000\n")
        self.network.advance(60)
        self.assertEqual(
            [d.sentAt for d in self.network.traffic if d.data == b"alice"], [0, 20.875, 40.875]
        )

    def test_malformedLinesDropped(self):
        """
        Lines that do not parse are dropped, counted and logged; the
        good ones around them are read.
        """
        self.network.advance(0.5)
        self.answer(b"garbage", b"0,1,bob,203.0.113.7,99999\n", b"1,2,bob,203.0.113.7,6000\n")
        self.network.advance(0.5)
        self.assertEqual(self.peer.drops.counts["malformed phonebook line"], 2)
        self.assertEqual(self.peer.lines, 1)
        self.assertEqual(self.peer.contact.address, ("203.0.113.7", 6000))

    def test_linesOnlyFromServer(self):
        """
        A phonebook line from anywhere but the server's exact address and
        port is not believed.
        """
        self.network.advance(0.5)
        # Past the NAT, as if it let everything in: it would filter both.
        for source in ((SERVER[0], 8081), ("192.0.2.66", 8080)):
            self.peer.datagramReceived(b"0,1,bob,192.0.2.66,6000\n", source)
        self.network.advance(1)
        self.assertIsNone(self.peer.contact)
        self.assertEqual(
            (self.peer.lines, dict(self.peer.drops.counts)),
            (0, {"not from the server or the contact": 2}),
        )

    def test_messagesOnlyFromContact(self):
        """
        Text from the contact's address is printed as a peer message, as
        the original does; text from anywhere else is dropped.
        """
        bob = self.network.host("203.0.113.7")
        bobPort = bob.listenUDP(6000, Recorder())
        self.network.advance(0.5)
        self.answer(b"0,1,bob,203.0.113.7,6000\n")
        self.network.advance(0.5)
        bobPort.write(TEXT, ("198.51.100.1", 5000))
        # Past the NAT, as if it let everything in.
        self.peer.datagramReceived(b"hello from eve", ("203.0.113.7", 6001))
        self.network.advance(0.5)
        self.assertEqual(list(self.peer.application.received), [(TEXT.decode(), ("203.0.113.7", 6000))])
        self.assertEqual(self.peer.drops.counts["text from an unknown address"], 1)
        [event] = [e for e in self.events if "peer message" in e["log_format"]]
        self.assertEqual((event["length"], event["port"]), (46, 6000))

    def test_stunFromServer(self):
        """
        A STUN answer from the server says it is a punch-server without
        seed compatibility.
        """
        self.serverPort.write(b"\x01\x01\x00\x00\x21\x12\xa4\x42" + b"\0" * 12, ("198.51.100.1", 5000))
        self.network.advance(0.5)
        self.assertEqual(self.peer.drops.counts["STUN from the server"], 1)

    def test_silentServer(self):
        """
        A server that answers nothing is reported, once.
        """
        self.network.advance(20)
        [event] = [e for e in self.events if "not answering" in e["log_format"]]
        self.assertEqual(event["count"], 5)

    def test_silentContactLookedUpAgain(self):
        """
        A contact that was heard and falls silent is looked up again at once.
        """
        bob = self.network.host("203.0.113.7")
        bobPort = bob.listenUDP(6000, Recorder())
        self.network.advance(0.5)
        self.answer(b"0,1,bob,203.0.113.7,6000\n")
        self.network.advance(0.5)
        bobPort.write(TEXT, ("198.51.100.1", 5000))
        self.network.advance(17)
        self.assertEqual(self.peer.contact.state, LOST)
        self.assertEqual(len(self.server.datagrams), 2)

    def test_stopLeavesNothing(self):
        """
        Once stopped, no timer of the peer's remains.
        """
        self.network.advance(0.5)
        self.answer(b"0,1,bob,203.0.113.7,6000\n")
        self.network.advance(2)
        self.port.stopListening()
        self.assertEqual(self.host.getDelayedCalls(), [])


class PeerOptionTests(SynchronousTestCase):
    """
    C{punch-peer --seed-compat}.
    """

    PEER = ["--server", "127.0.0.1:8080", "--name", "alice", "--peer", "bob"]

    def parse(self, argv):
        options = peer_tap.Options()
        options.parseOptions(argv)
        return options

    def test_makeService(self):
        """
        With C{--seed-compat}, the service runs a peer of the original text
        protocol, configured from the options.
        """
        options = self.parse(self.PEER + ["--seed-compat", "-i", "10", "-m", "hi", "--keepalive", "2"])
        service = peer_tap.makeService(options, reactor=Clock())
        protocol = service.protocol
        self.assertIsInstance(protocol, SeedPeerProtocol)
        self.assertEqual(
            (protocol.server, protocol.name, protocol.wants, protocol.interval, protocol.text),
            (("127.0.0.1", 8080), "alice", "bob", 10.0, "hi"),
        )
        self.assertEqual(protocol.pathTimeout, 6.0)

    def test_offByDefault(self):
        """
        Without it, the peer speaks punchd's protocol.
        """
        options = self.parse(self.PEER)
        self.assertFalse(options["seed-compat"])
        self.assertNotIsInstance(peer_tap.makeService(options, reactor=Clock()).protocol, SeedPeerProtocol)

    def test_errors(self):
        """
        What the original cannot carry is a usage error naming the option.
        """
        cases = [
            (["--server", "127.0.0.1:8080", "--probe", "--seed-compat"], "--probe needs a punch-server, not --seed-compat"),
            (self.PEER[:3] + ["a,b"] + self.PEER[4:] + ["--seed-compat"], "--name: 'a,b' has a comma, which the original's phonebook lines cannot carry"),
            (["--server", "[::1]:8080", "-n", "a", "-c", "b", "--seed-compat"], "--server: ::1 is IPv6; the original test-server speaks IPv4 only"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, self.parse, argv)
            self.assertEqual(str(e), message)

    def test_directMessageIsTheOriginals(self):
        """
        By default a seed peer sends the original's direct message.
        """
        protocol = SeedPeerProtocol(Clock(), SERVER, "alice", "bob")
        self.assertEqual(protocol.text, seedprotocol.directMessage("alice", "bob"))


class NativePeerTests(SynchronousTestCase):
    """
    A native L{PeerProtocol} introduced to an original test-client speaks
    the original's text to it.
    """

    def setUp(self):
        self.network = Network(latency=0.125)
        self.server = Recorder()
        self.serverPort = self.network.host(SERVER[0]).listenUDP(SERVER[1], self.server)
        self.host = self.network.host("203.0.113.1")
        self.peer = PeerProtocol(
            self.host,
            SERVER,
            "alice",
            "bob",
            discoverNAT=False,
            pathTimeout=15,
            dialects=(OriginalPeers("This is a direct P2P message from alice to bob", pathTimeout=15),),
        )
        self.port = self.host.listenUDP(5000, self.peer)
        self.bob = Recorder()
        self.bobPort = self.network.host("203.0.113.7").listenUDP(6000, self.bob)
        self.network.advance(1)
        answerRegistration(
            self.serverPort, [d for d, _ in self.server.datagrams], ("203.0.113.1", 5000)
        )
        self.network.advance(0.5)

    def introduce(self, address=("203.0.113.7", 6000), txid=b"t" * 12, key=None):
        self.serverPort.write(
            encodeOriginalIntroduction(
                txid, "bob", address, messages.introductionKey(NAME_SECRET) if key is None else key
            ),
            ("203.0.113.1", 5000),
        )
        self.network.advance(0.5)

    def test_forgedOriginalIntroductionDropped(self):
        """
        An ORIGINAL introduction not signed with the peer's name secret is
        dropped unacknowledged, and the peer sends the address it names
        nothing.
        """
        serverHeard = len(self.server.datagrams)
        self.introduce(key=messages.introductionKey(b"w" * messages.SECRET_BYTES))
        self.network.advance(3)
        self.assertIsNone(self.peer.punch)
        self.assertEqual(self.bob.datagrams, [])
        self.assertEqual(self.peer.drops.counts["unauthenticated introduction"], 1)
        self.assertNotIn(
            messages.INTRODUCE,
            [stun.decode(d).method for d, _ in self.server.datagrams[serverHeard:]],
        )

    def test_sendsText(self):
        """
        Introduced to an original client, the peer acknowledges and sends it
        the original's direct message as text, once a second, and no probes.
        """
        verifyObject(IPeer, self.peer)
        for dialect in self.peer.dialects:
            verifyObject(IPeerDialect, dialect)
        self.introduce()
        self.network.advance(3)
        self.assertIsInstance(self.peer.punch, OriginalContact)
        self.assertEqual(
            set(d for d, _ in self.bob.datagrams),
            {b"This is a direct P2P message from alice to bob"},
        )
        self.assertEqual(len(self.bob.datagrams), 4)
        acks = [
            m for m in (stun.decode(d) for d, _ in self.server.datagrams)
            if (m.method, m.messageClass) == (messages.INTRODUCE, stun.SUCCESS)
        ]
        self.assertEqual(len(acks), 1)

    def test_printsText(self):
        """
        The original's text from its address is received and printed as the
        original prints it.
        """
        events = EventLoggingObserver.createWithCleanup(self, self.peer.log.observer)
        self.introduce()
        self.bobPort.write(TEXT, ("203.0.113.1", 5000))
        self.network.advance(0.5)
        self.assertEqual(list(self.peer.application.received), [(TEXT.decode(), ("203.0.113.7", 6000))])
        [event] = [e for e in events if "peer message" in e["log_format"]]
        self.assertEqual(event["length"], 46)

    def test_textFromElsewhereDropped(self):
        """
        Text from any other address is dropped.
        """
        self.introduce()
        self.peer.datagramReceived(TEXT, ("203.0.113.7", 6001))
        self.assertEqual(list(self.peer.application.received), [])
        self.assertEqual(self.peer.drops.counts["malformed"], 1)

    def test_retransmittedIntroductionIgnored(self):
        """
        The same introduction again does not start over.
        """
        self.introduce()
        contact = self.peer.punch
        self.introduce()
        self.assertIs(self.peer.punch, contact)

    def test_newAddressStartsOver(self):
        """
        An introduction with a new address for the original client replaces
        the old one.
        """
        self.introduce()
        self.introduce(("203.0.113.7", 6002), txid=b"u" * 12)
        self.assertEqual(self.peer.punch.address, ("203.0.113.7", 6002))

    def test_notSeekingWhileTalking(self):
        """
        While it talks to the original client, it does not ask for
        introductions.
        """
        self.introduce()
        self.assertFalse(self.peer.seeking)

    def test_stopLeavesNothing(self):
        """
        Once stopped, no timer of the peer's remains.
        """
        self.introduce()
        self.port.stopListening()
        self.assertEqual(self.host.getDelayedCalls(), [])
