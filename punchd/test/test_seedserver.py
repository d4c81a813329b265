"""
Tests for L{punchd.compat.server}: the stage manager's answers to original
test-clients (C{punch-server --seed-compat}), over L{punchd.testing}'s
simulated network.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver
from zope.interface.verify import verifyObject
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, server_tap, stun
from punchd.compat import protocol as seedprotocol
from punchd.phonebook import Phonebook
from punchd.ratelimit import SourceLimiter
from punchd.compat.introductions import parseOriginalIntroduction
from punchd.compat.server import PROOF_GAP, SEEKERS_PER_NAME, OriginalClients
from punchd.interfaces import IServerDialect, IStageManager
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER, heldSecret, register
from punchd.testing import Network, portRestrictedCone


class Recorder(DatagramProtocol):
    """
    Records the datagrams it receives.
    """

    def __init__(self):
        self.datagrams = []

    def datagramReceived(self, datagram, address):
        self.datagrams.append((datagram, address))

    def lines(self):
        return [
            seedprotocol.parseLine(d) for d, _ in self.datagrams if seedprotocol.isText(d)
        ]

    def stun(self, method, messageClass):
        found = []
        for datagram, _ in self.datagrams:
            if not seedprotocol.isText(datagram):
                message = stun.decode(datagram)
                if (message.method, message.messageClass) == (method, messageClass):
                    found.append(message)
        return found


def line(slot, count, name, address):
    return seedprotocol.PhonebookLine(slot, count, name, address)


class OriginalClientsMixin:
    def setUp(self):
        self.network = Network(latency=0.125)
        self.serverHost = self.network.host(SERVER[0])
        self.phonebook = Phonebook(maxEntries=100, ttl=60)
        self.compat = OriginalClients(self.serverHost, **self.compatSettings())
        self.server = StageManagerProtocol(
            self.serverHost, self.phonebook, dialects=(self.compat,)
        )
        self.port = self.serverHost.listenUDP(SERVER[1], self.server)
        self.events = EventLoggingObserver.createWithCleanup(self, self.server.log.observer)
        self.hosts = 0

    def compatSettings(self):
        return {}

    def client(self, port=5000, nat=True):
        """
        A host of its own, behind a NAT of its own unless C{nat} is false,
        listening on C{port}.

        @return: The recorder, its transport, and its public address.
        """
        self.hosts += 1
        if nat:
            box = self.network.nat(f"198.51.100.{self.hosts}", **portRestrictedCone())
            host = self.network.host("10.0.0.2", behind=box)
            public = (box.publicAddress, port)
        else:
            host = self.network.host(f"203.0.113.{self.hosts}")
            public = (host.address, port)
        recorder = Recorder()
        transport = host.listenUDP(port, recorder)
        return recorder, transport, public

    def original(self, name, **kw):
        """
        An original client that registers C{name} twice, L{PROOF_GAP} apart,
        which proves its address as far as an original client can; the
        first registration gets nothing, as it is smaller than any answer.
        """
        recorder, transport, public = self.client(**kw)
        transport.write(name.encode(), SERVER)
        self.network.advance(PROOF_GAP)
        self.assertEqual(recorder.datagrams, [])
        transport.write(name.encode(), SERVER)
        self.network.advance(1)
        return recorder, transport, public

    def native(self, name, wants, seeking=True, port=6000):
        recorder, transport, public = self.client(port=port)
        self.registerNative(transport, name, wants, seeking)
        return recorder, transport, public

    def registerNative(self, transport, name, wants, seeking=True, secret=None):
        register(self.server, transport, name, wants, seeking, secret=secret)
        self.network.advance(1)

    def logged(self, text):
        return [e for e in self.events if text in e.get("log_format", "")]


class OffByDefaultTests(SynchronousTestCase):
    """
    Without C{--seed-compat}, the stage manager ignores the original.
    """

    def test_textDropped(self):
        """
        A stage manager without seed compatibility answers nothing to an
        original registration, and counts it as malformed.
        """
        network = Network()
        host = network.host(SERVER[0])
        server = StageManagerProtocol(host, Phonebook(10, 60))
        host.listenUDP(SERVER[1], server)
        client = network.host("203.0.113.1")
        recorder = Recorder()
        client.listenUDP(5000, recorder).write(b"alice", SERVER)
        network.advance(1)
        self.assertEqual(recorder.datagrams, [])
        self.assertEqual(server.drops.counts["malformed"], 1)
        self.assertEqual(len(server.phonebook), 0)


class AnswerTests(OriginalClientsMixin, SynchronousTestCase):
    """
    Answers to original registrations.
    """

    def test_ownEntry(self):
        """
        The first original client is answered with one line: its own entry,
        with the address its NAT showed.
        """
        alice, _, public = self.original("alice")
        self.assertEqual(alice.lines(), [line(0, 1, "alice", public)])
        self.assertEqual([a for _, a in alice.datagrams], [SERVER])

    def test_phonebookEntryIsOriginal(self):
        """
        The original client is in the shared phonebook, flagged original,
        with no local addresses and no wanted peer.
        """
        _, _, public = self.original("alice")
        entry = self.phonebook.lookup("alice", self.network.clock.seconds())
        self.assertEqual(
            (entry.address, entry.localAddresses, entry.wants, self.compat.speaksFor(entry)),
            (public, (), (), True),
        )

    def test_nameUpToLineEnd(self):
        """
        The name is the text up to the first CR, LF or space.
        """
        alice, _, public = self.original("alice\r\nwhatever")
        self.assertEqual(alice.lines(), [line(0, 1, "alice", public)])

    def test_otherOriginals(self):
        """
        A later original client is answered with its own entry, then the
        others, most recent first.
        """
        _, _, alicePublic = self.original("alice")
        _, _, bobPublic = self.original("bob")
        carol, _, carolPublic = self.original("carol")
        self.assertEqual(
            carol.lines(),
            [
                line(0, 3, "carol", carolPublic),
                line(1, 3, "bob", bobPublic),
                line(2, 3, "alice", alicePublic),
            ],
        )

    def test_newEntryPushed(self):
        """
        A new original client's entry is sent at once to the original
        clients already there, so they need not wait for their next
        registration to learn of it.
        """
        alice, _, alicePublic = self.original("alice")
        _, _, bobPublic = self.original("bob")
        self.assertEqual(
            alice.lines(), [line(0, 1, "alice", alicePublic), line(0, 1, "bob", bobPublic)]
        )

    def test_refreshNotPushed(self):
        """
        A registration from the same address again is answered but not
        sent to the others.
        """
        alice, _, _ = self.original("alice")
        bob, bobTransport, _ = self.original("bob")
        before = len(alice.datagrams)
        bobTransport.write(b"bob", SERVER)
        self.network.advance(1)
        self.assertEqual(len(alice.datagrams), before)
        self.assertEqual(len(bob.datagrams), 4)

    def test_answerCapped(self):
        """
        However many original clients there are, an answer holds at most 16
        lines, numbered 0 to 15 of 16, its own first.
        """
        for i in range(20):
            self.original(f"peer{i}", nat=False)
        late, _, latePublic = self.original("late", nat=False)
        lines = late.lines()
        self.assertEqual(len(lines), 16)
        self.assertEqual(lines[0], line(0, 16, "late", latePublic))
        self.assertEqual([(l.slot, l.count) for l in lines], [(i, 16) for i in range(16)])
        self.assertEqual(
            [l.name for l in lines[1:]], [f"peer{i}" for i in range(19, 4, -1)]
        )

    def test_pushesBounded(self):
        """
        A new entry is sent to at most 15 other original clients, the most
        recent.
        """
        clients = [self.original(f"peer{i}", nat=False)[0] for i in range(20)]
        before = [len(c.datagrams) for c in clients]
        self.original("late", nat=False)
        pushed = [len(c.datagrams) - b for c, b in zip(clients, before)]
        self.assertEqual(pushed, [0] * 5 + [1] * 15)

    def test_invalidDropped(self):
        """
        An empty or invalid name is dropped, counted and logged, and not
        answered.
        """
        alice, transport, _ = self.client()
        for datagram in (b"", b"\n", b"a,b"):
            transport.write(datagram, SERVER)
        self.network.advance(1)
        self.assertEqual(alice.datagrams, [])
        self.assertEqual(self.server.drops.counts["invalid original registration"], 3)
        self.assertEqual(len(self.phonebook), 0)

    def test_logged(self):
        """
        A new original client is logged with its name and address.
        """
        _, _, public = self.original("alice")
        [event] = self.logged("as an original test-client")
        self.assertEqual((event["name"], event["count"]), ("alice", 1))
        self.assertEqual(event["address"], f"{public[0]}:{public[1]}")

    def test_nativeTakesTheNameBack(self):
        """
        A native registration of an original client's name makes it a native
        entry again, which original clients are no longer shown.
        """
        self.original("alice")
        self.native("alice", "carol", seeking=False)
        entry = self.phonebook.lookup("alice", self.network.clock.seconds())
        self.assertFalse(self.compat.speaksFor(entry))
        bob, _, bobPublic = self.original("bob")
        self.assertEqual(bob.lines(), [line(0, 1, "bob", bobPublic)])


class NativePeerTests(OriginalClientsMixin, SynchronousTestCase):
    """
    Native peers and original clients in one phonebook.
    """

    def test_nativeNotShownUnlessSeeking(self):
        """
        A native peer that does not want an original client is never shown
        to it.
        """
        self.native("carol", "dave")
        alice, _, alicePublic = self.original("alice")
        self.assertEqual(alice.lines(), [line(0, 1, "alice", alicePublic)])

    def test_nativeIntroducedToOriginal(self):
        """
        A native peer that seeks an original client is told an introduction
        follows and is introduced to it, flagged original, without a punch
        key; the original client is sent the native peer's entry at once.
        """
        alice, _, alicePublic = self.original("alice")
        bob, _, bobPublic = self.native("bob", "alice")
        [answer] = bob.stun(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_INTRODUCED,))
        [introduce] = bob.stun(messages.INTRODUCE, stun.REQUEST)
        self.assertEqual(
            parseOriginalIntroduction(introduce), ("alice", alicePublic)
        )
        self.assertEqual(alice.lines()[-1], line(0, 1, "bob", bobPublic))
        self.assertEqual(self.server.stats["introductions"], 1)

    def test_introductionRetransmitted(self):
        """
        The introduction to an original client is sent again until the
        native peer acknowledges it, like any other.
        """
        self.original("alice")
        bob, _, _ = self.native("bob", "alice")
        self.network.advance(10)
        self.assertEqual(len(bob.stun(messages.INTRODUCE, stun.REQUEST)), 4)
        self.assertEqual(len(self.serverHost.getDelayedCalls()), 1, "only the sweeper")

    def test_originalLaterSeesNative(self):
        """
        An original client that registers after a native peer sought it is
        not shown that peer in the answer to its registration: once it has
        proven its address, the native peer is introduced to it, and its
        entry sent to it.
        """
        bob, _, bobPublic = self.native("bob", "alice")
        [answer] = bob.stun(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_WAITING,))
        alice, _, alicePublic = self.original("alice")
        self.assertEqual(
            alice.lines(), [line(0, 1, "alice", alicePublic), line(0, 1, "bob", bobPublic)]
        )
        [introduce] = bob.stun(messages.INTRODUCE, stun.REQUEST)
        self.assertEqual(parseOriginalIntroduction(introduce)[1], alicePublic)

    def test_unprovenOriginalGetsNothing(self):
        """
        A text registration of a name a native peer seeks, sent once (as a
        spoofer's would be), gets no more bytes than it sent: here none.
        The native peer's address is sent nowhere, the native peer is not
        introduced, and its answer says it is waiting.
        """
        bob, bobTransport, bobPublic = self.native("bob", "alice")
        victim, transport, _ = self.client()
        transport.write(b"alice", SERVER)
        self.network.advance(5)
        self.assertEqual(victim.datagrams, [])
        self.assertEqual(bob.stun(messages.INTRODUCE, stun.REQUEST), [])
        secret = heldSecret(bob.stun(messages.REGISTER, stun.SUCCESS))
        self.registerNative(bobTransport, "bob", "alice", secret=secret)
        answer = bob.stun(messages.REGISTER, stun.SUCCESS)[-1]
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_WAITING,))
        self.assertEqual(bob.stun(messages.INTRODUCE, stun.REQUEST), [])
        told = [d for d in self.network.traffic if bobPublic[0].encode() in d.data]
        self.assertEqual(told, [])

    def test_unprovenAnswerAtMostTheRequest(self):
        """
        To a text registration from an address not proven, the answer is
        at most as many bytes as the registration: a 1-byte registration
        gets nothing, one long enough gets its own line.
        """
        self.original("alice")
        self.original("bob")
        for name in ("c", "c" * 40):
            recorder, transport, public = self.client()
            transport.write(name.encode(), SERVER)
            self.network.advance(1)
            sent = sum(len(d) for d, _ in recorder.datagrams)
            self.assertLessEqual(sent, len(name))
        # Every line is longer than the name it carries.
        self.assertEqual(recorder.datagrams, [])

    def test_unprovenNotAnnounced(self):
        """
        An original client not yet proven is not sent to other original
        clients, which would send their text to it.
        """
        alice, _, _ = self.original("alice")
        _, transport, _ = self.client()
        transport.write(b"mallory", SERVER)
        self.network.advance(5)
        self.assertNotIn("mallory", [l.name for l in alice.lines()])

    def test_notSeekingNotIntroduced(self):
        """
        A native peer that wants an original client but is not seeking an
        introduction (it has a path) is neither shown to the client nor
        introduced again.
        """
        bob, _, bobPublic = self.native("bob", "alice", seeking=False)
        alice, _, alicePublic = self.original("alice")
        self.assertEqual(alice.lines(), [line(0, 1, "alice", alicePublic)])
        self.assertEqual(bob.stun(messages.INTRODUCE, stun.REQUEST), [])

    def test_nativeChangesItsMind(self):
        """
        A native peer that now wants another is no longer shown to the
        original client it wanted before.
        """
        bob, bobTransport, _ = self.native("bob", "alice")
        secret = heldSecret(bob.stun(messages.REGISTER, stun.SUCCESS))
        self.registerNative(bobTransport, "bob", "carol", secret=secret)
        alice, _, alicePublic = self.original("alice")
        self.assertEqual(alice.lines(), [line(0, 1, "alice", alicePublic)])

    def test_seekersBounded(self):
        """
        At most 16 native peers are remembered as seeking one name, the most
        recent: only they are introduced to it.
        """
        natives = [
            self.native(f"n{i}", "alice", port=6000 + i)[0] for i in range(SEEKERS_PER_NAME + 4)
        ]
        self.original("alice")
        introduced = [i for i, r in enumerate(natives) if r.stun(messages.INTRODUCE, stun.REQUEST)]
        self.assertEqual(introduced, list(range(4, 20)))


class RateLimitTests(OriginalClientsMixin, SynchronousTestCase):
    """
    Answers are rate-limited per source address, and in all.
    """

    def compatSettings(self):
        return {"limiter": SourceLimiter(rate=1, burst=4, totalRate=1000, totalBurst=1000)}

    def test_floodCapped(self):
        """
        A source that registers over and over is answered only as far as its
        bucket allows; the rest is dropped, counted and not registered.
        """
        alice, transport, _ = self.original("alice")
        for i in range(10):
            transport.write(b"alice", SERVER)
        self.network.advance(1)
        self.assertEqual(len(alice.datagrams), 1 + 4)
        self.assertEqual(self.server.drops.counts["rate-limited original registration"], 6)

    def test_recovers(self):
        """
        After a pause the source is answered again.
        """
        alice, transport, _ = self.original("alice")
        for i in range(10):
            transport.write(b"alice", SERVER)
        self.network.advance(10)
        transport.write(b"alice", SERVER)
        self.network.advance(1)
        self.assertEqual(len(alice.datagrams), 1 + 4 + 1)

    def test_wholeAnswerOrNothing(self):
        """
        An answer the bucket cannot pay for whole is not sent at all.
        """
        self.original("alice", nat=False)
        self.original("bob", nat=False)
        self.original("carol", nat=False)
        dave, transport, _ = self.original("dave", nat=False)
        self.assertEqual(len(dave.datagrams), 4)
        transport.write(b"dave", SERVER)
        transport.write(b"dave", SERVER)
        self.network.advance(0.5)
        self.assertEqual(len(dave.datagrams), 4)
        self.assertEqual(self.server.drops.counts["rate-limited original registration"], 2)

    def test_pushesLimited(self):
        """
        Entries pushed to an original client count against its address too.
        """
        alice, transport, _ = self.original("alice", nat=False)
        _, bob, _ = self.client(nat=False)
        bob.write(b"bob", SERVER)
        self.network.advance(PROOF_GAP)
        for i in range(4):
            transport.write(b"alice", SERVER)
        bob.write(b"bob", SERVER)
        self.network.advance(1)
        self.assertNotIn("bob", [l.name for l in alice.lines()])
        self.assertEqual(self.server.drops.counts["rate-limited phonebook push"], 1)


class ServerOptionTests(SynchronousTestCase):
    """
    C{punch-server --seed-compat}.
    """

    def test_offByDefault(self):
        """
        By default the stage manager has no seed compatibility.
        """
        options = server_tap.Options()
        options.parseOptions([])
        self.assertFalse(options["seed-compat"])
        protocol = server_tap.makeService(options, reactor=Network().host("127.0.0.1")).protocol
        self.assertEqual(protocol.dialects, ())

    def test_seedCompat(self):
        """
        With C{--seed-compat}, the stage manager answers original clients
        from its own phonebook.
        """
        options = server_tap.Options()
        options.parseOptions(["--seed-compat"])
        protocol = server_tap.makeService(options, reactor=Network().host("127.0.0.1")).protocol
        [dialect] = protocol.dialects
        self.assertIsInstance(dialect, OriginalClients)
        verifyObject(IServerDialect, dialect)
        verifyObject(IStageManager, protocol)
