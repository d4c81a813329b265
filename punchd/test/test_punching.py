"""
Tests for L{punchd.punching.Punch} on its own, with a clock and a recording
send function.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import messages, stun
from punchd.interfaces import ICandidate, IPath, IPathObserver, IPathReceiver
from punchd.punching import LOCAL, PUBLIC, PUNCHING, STOPPED, UP, Punch

KEY = b"k" * 16
PUBLIC_ADDRESS = ("203.0.113.1", 6000)
LOCAL_ADDRESS = ("10.0.0.3", 6000)


@implementer(IPathObserver, IPathReceiver)
class Observer:
    def __init__(self):
        self.events = []

    def pathUp(self, punch):
        self.events.append("up")

    def punchFailed(self, punch):
        self.events.append("failed")

    def pathLost(self, punch):
        self.events.append("lost")

    def pathMoved(self, punch, previous):
        self.events.append(("moved", previous.kind, punch.selected.kind))

    def dataReceived(self, punch, data, source):
        self.events.append(("data", data, source))


class PunchTests(SynchronousTestCase):
    """
    Tests for L{Punch}.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.observer = Observer()
        self.punch = Punch(
            self.clock,
            lambda datagram, address: self.sent.append((stun.decode(datagram), address, datagram)),
            "alice",
            messages.Introduction("bob", PUBLIC_ADDRESS, (LOCAL_ADDRESS,), KEY),
            self.observer,
        )

    def rounds(self, count):
        """
        Advance the clock by C{count} probe intervals, to each round's exact
        time, as the punch's loop computes it.
        """
        first = round(self.clock.seconds() / 0.05)
        for n in range(first + 1, first + count + 1):
            self.clock.advance(n * 0.05 - self.clock.seconds())

    def answer(self, address):
        """
        Answer the latest probe sent to C{address}, as bob would.
        """
        probe = [m for m, a, _ in self.sent if a == address and m.method == stun.BINDING][-1]
        datagram = messages.encodeProbeAnswer(probe.transactionID, ("198.51.100.1", 5000), KEY)
        return self.punch.handle(datagram, stun.decode(datagram), address)

    def test_probesEveryCandidateLocalFirst(self):
        """
        Each round probes every candidate, the local one first, every 50 ms,
        each probe authenticated with the punch key.
        """
        self.punch.start()
        self.clock.advance(0.05)
        self.assertEqual(
            [a for _, a, _ in self.sent],
            [LOCAL_ADDRESS, PUBLIC_ADDRESS, LOCAL_ADDRESS, PUBLIC_ADDRESS],
        )
        for message, _, datagram in self.sent:
            self.assertEqual(message.get(stun.USERNAME), b"bob:alice")
            self.assertTrue(stun.verifyIntegrity(datagram, KEY))

    def test_upgradeToLocal(self):
        """
        When the public candidate answers first, the path is up over it, and
        a local candidate answering within the upgrade window takes over.
        """
        self.punch.start()
        self.clock.advance(0.1)
        self.assertTrue(self.answer(PUBLIC_ADDRESS))
        self.assertEqual((self.punch.state, self.punch.selected.kind), (UP, PUBLIC))
        self.clock.advance(0.1)
        self.assertTrue(self.answer(LOCAL_ADDRESS))
        self.assertEqual(self.punch.selected.kind, LOCAL)
        self.assertEqual(self.observer.events, ["up", ("moved", PUBLIC, LOCAL)])
        self.sent.clear()
        self.clock.advance(0.5)
        self.assertEqual(
            [m for m, _, _ in self.sent if m.method == stun.BINDING], [],
            "no probes once the best candidate answered",
        )

    def test_upgradeWindowCloses(self):
        """
        A better candidate that never answers is probed only for the upgrade
        window, on its backoff since it was never heard from.
        """
        self.punch.start()
        self.clock.advance(0.1)
        self.answer(PUBLIC_ADDRESS)
        self.sent.clear()
        # The window is at least half a second: the local candidate's fourth
        # and eighth rounds come in it (probes at 200 and 400 ms).
        self.clock.pump([0.05] * 9)
        self.assertEqual(
            [a for m, a, _ in self.sent if m.method == stun.BINDING], [LOCAL_ADDRESS] * 2
        )
        self.clock.advance(0.55)
        self.sent.clear()
        self.clock.advance(1)
        self.assertEqual([a for m, a, _ in self.sent if m.method == stun.BINDING], [])

    def test_timeout(self):
        """
        Without an answer, the punch fails after the punch timeout and stops
        sending.
        """
        self.punch.start()
        for _ in range(99):
            self.clock.advance(0.05)
        self.assertEqual(self.punch.state, PUNCHING)
        self.clock.advance(0.1)
        self.assertEqual(self.observer.events, ["failed"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Two candidates never heard from, each probed at 0, 50, 100, 200,
        # 400, 800, 1600 and 3200 ms.
        self.assertEqual(self.punch.probesSent, 16)

    def test_unheardCandidatesBackOff(self):
        """
        A candidate not heard from is probed 0, 50, 100, 200, 400 ... ms
        after the introduction, not every 50 ms.
        """
        self.punch.start()
        times = []
        for _ in range(100):
            times.extend(round(self.clock.seconds(), 2) for _, a, _ in self.sent if a == PUBLIC_ADDRESS)
            self.sent.clear()
            self.rounds(1)
        self.assertEqual(times, [0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2])

    def test_heardCandidateProbedEveryInterval(self):
        """
        Once an authenticated probe comes from a candidate, it is heard and
        probed every 50 ms, outside the budget.
        """
        self.punch.start()
        self.rounds(6)
        probe = messages.encodeProbe(stun.newTransactionID(), "alice", "bob", KEY)
        self.punch.handle(probe, stun.decode(probe), PUBLIC_ADDRESS)
        self.sent.clear()
        self.rounds(4)
        self.assertEqual(
            [m.messageClass for m, a, _ in self.sent if a == PUBLIC_ADDRESS], [stun.REQUEST] * 4
        )

    def test_forgedProbeDoesNotMakeHeard(self):
        """
        A probe from a candidate that fails the integrity check does not
        lift its budget.
        """
        self.punch.start()
        self.rounds(6)
        probe = messages.encodeProbe(stun.newTransactionID(), "alice", "bob", b"x" * 16)
        self.assertFalse(self.punch.handle(probe, stun.decode(probe), PUBLIC_ADDRESS))
        self.sent.clear()
        self.rounds(4)
        self.assertEqual([a for _, a, _ in self.sent], [LOCAL_ADDRESS, PUBLIC_ADDRESS])

    def test_peerReflexiveHeard(self):
        """
        An address learned from the peer's probe (a triggered check) is heard:
        probed every 50 ms until it answers.
        """
        self.punch.start()
        source = ("203.0.113.1", 40123)
        probe = messages.encodeProbe(stun.newTransactionID(), "alice", "bob", KEY)
        self.punch.handle(probe, stun.decode(probe), source)
        self.sent.clear()
        self.rounds(6)
        self.assertEqual(
            [a for m, a, _ in self.sent if m.messageClass == stun.REQUEST].count(source), 6
        )

    def test_victimsOfForgedIntroductionGetBudgetOnly(self):
        """
        An introduction naming one public and eight local addresses that
        never answer brings them at most the 4 KiB budget over the whole
        punch timeout, evenly shared.
        """
        victims = tuple(("192.0.2.%d" % i, 9000 + i) for i in range(1, 10))
        introduction = messages.Introduction("bob", victims[0], victims[1:], KEY)
        sent = []
        punch = Punch(
            self.clock, lambda datagram, address: sent.append((datagram, address)),
            "alice", introduction, self.observer,
        )
        punch.start()
        self.rounds(120)
        self.assertEqual(self.observer.events, ["failed"])
        total = sum(len(d) for d, _ in sent)
        self.assertLessEqual(total, 4096)
        self.assertEqual(total, punch.unheardBytesSent)
        for victim in victims:
            self.assertLessEqual(sum(len(d) for d, a in sent if a == victim), 4096 // 9)
            self.assertGreaterEqual(len([a for _, a in sent if a == victim]), 6)

    def test_wrongKeyIgnored(self):
        """
        An answer that is not authenticated with the punch key is not ours.
        """
        self.punch.start()
        probe = self.sent[0][0]
        datagram = messages.encodeProbeAnswer(probe.transactionID, ("198.51.100.1", 5000), b"x" * 16)
        self.assertFalse(self.punch.handle(datagram, stun.decode(datagram), LOCAL_ADDRESS))
        self.assertEqual(self.punch.state, PUNCHING)

    def test_unknownTransactionIgnored(self):
        """
        An authenticated answer to a probe never sent is not ours.
        """
        self.punch.start()
        datagram = messages.encodeProbeAnswer(b"\x01" * 12, ("198.51.100.1", 5000), KEY)
        self.assertFalse(self.punch.handle(datagram, stun.decode(datagram), LOCAL_ADDRESS))

    def test_probeAnsweredAndAdopted(self):
        """
        A probe from an unknown address with the right key is answered with
        that address, and the address becomes a candidate that is probed at
        once.
        """
        self.punch.start()
        self.sent.clear()
        source = ("203.0.113.1", 40123)
        txid = stun.newTransactionID()
        probe = messages.encodeProbe(txid, "alice", "bob", KEY)
        self.assertTrue(self.punch.handle(probe, stun.decode(probe), source))
        answer, address, datagram = self.sent[0]
        self.assertEqual((answer.messageClass, answer.transactionID, address), (stun.SUCCESS, txid, source))
        self.assertEqual(stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), txid), source)
        self.assertTrue(stun.verifyIntegrity(datagram, KEY))
        self.assertEqual(self.sent[1][1], source)
        self.assertEqual(self.sent[1][0].messageClass, stun.REQUEST)
        self.assertIn(source, [c.address for c in self.punch.candidates])

    def test_dataAndKeepalives(self):
        """
        With the path up, what is written goes to the selected candidate in
        C{DATA} indications, what the peer sends reaches the receiver, and a
        keepalive goes out every 5 s.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.sent.clear()
        for _ in range(10):
            self.clock.advance(1)
            self.punch.write(b"hello \x00\xff")
            # the peer keeps talking
            data = messages.encodeData(stun.newTransactionID(), "alice", "bob", b"hi", KEY)
            self.punch.handle(data, stun.decode(data), LOCAL_ADDRESS)
        kinds = [m.method for m, _, _ in self.sent]
        self.assertEqual(kinds.count(messages.DATA), 10)
        self.assertEqual(kinds.count(stun.BINDING), 2)
        [first] = [(m, a) for m, a, _ in self.sent if m.method == messages.DATA][:1]
        self.assertEqual((messages.parseData(first[0]), first[1]), (b"hello \x00\xff", LOCAL_ADDRESS))
        self.assertEqual(self.observer.events.count(("data", b"hi", LOCAL_ADDRESS)), 10)

    def test_writeTooLarge(self):
        """
        A write larger than a datagram carries raises L{ValueError}, and
        nothing is sent.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.sent.clear()
        self.punch.write(b"x" * messages.MAX_PAYLOAD_BYTES)
        self.assertRaises(ValueError, self.punch.write, b"x" * (messages.MAX_PAYLOAD_BYTES + 1))
        self.assertEqual(len(self.sent), 1)

    def test_writeBeforeUp(self):
        """
        A write before the path is up raises L{RuntimeError}.
        """
        self.punch.start()
        self.assertRaises(RuntimeError, self.punch.write, b"early")
        self.assertIsNone(self.punch.getPeer())
        self.assertIsNone(self.punch.kind)

    def test_pathInterface(self):
        """
        A punch is an L{IPath}, its candidates L{ICandidate}s, and once up
        it names the peer's address and the selected candidate's kind.
        """
        verifyObject(IPath, self.punch)
        verifyObject(IPathObserver, self.observer)
        verifyObject(IPathReceiver, self.observer)
        for candidate in self.punch.candidates:
            verifyObject(ICandidate, candidate)
        self.punch.start()
        self.answer(PUBLIC_ADDRESS)
        self.assertEqual(self.punch.getPeer(), IPv4Address("UDP", *PUBLIC_ADDRESS))
        self.assertEqual(self.punch.kind, PUBLIC)

    def test_lost(self):
        """
        A path with nothing heard for the path timeout is reported lost at
        the next keepalive, and the punch stops.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.clock.advance(15)
        self.assertEqual(self.observer.events, ["up"])
        self.clock.advance(5)
        self.assertEqual(self.observer.events, ["up", "lost"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop(self):
        """
        A stopped punch leaves no delayed call and takes no more datagrams.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.punch.stop()
        self.assertEqual(self.punch.state, STOPPED)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        data = messages.encodeData(stun.newTransactionID(), "alice", "bob", b"hi", KEY)
        self.assertFalse(self.punch.handle(data, stun.decode(data), LOCAL_ADDRESS))
