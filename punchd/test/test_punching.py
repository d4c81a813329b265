"""
Tests for L{punchd.punching.Punch} on its own, with a clock and a recording
send function.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import frames, messages, stun
from punchd.interfaces import ICandidate, IPath, IPathObserver, IPathReceiver
from punchd.punching import LOCAL, PEER_REFLEXIVE, PUBLIC, PUNCHING, STOPPED, UP, Punch
from punchd.relaying import RelayedSource

KEY = b"k" * 16
#: Bob's receiver index, in his probes and answers.
BOB_INDEX = 0x0B0B0B
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
            lambda datagram, address: self.sent.append(
                (None if frames.isFrame(datagram) else stun.decode(datagram), address, datagram)
            ),
            "alice",
            messages.Introduction("bob", PUBLIC_ADDRESS, (LOCAL_ADDRESS,), KEY),
            self.observer,
            index=0xA11CE5,
        )
        self.fromBob = frames.FrameWriter(frames.frameKey(KEY, "bob", "alice"), 0xA11CE5)
        self.toBob = frames.FrameReader(frames.frameKey(KEY, "alice", "bob"))

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
        datagram = messages.encodeProbeAnswer(
            probe.transactionID, ("198.51.100.1", 5000), KEY, BOB_INDEX
        )
        return self.punch.handle(datagram, stun.decode(datagram), address)

    def probeFromBob(self, address, key=KEY):
        """
        Hand the punch a probe from bob at C{address}.
        """
        probe = messages.encodeProbe(stun.newTransactionID(), "alice", "bob", key, BOB_INDEX)
        return self.punch.handle(probe, stun.decode(probe), address)

    def sentFrames(self):
        """
        The payloads of the frames sent, with where they went.
        """
        return [(self.toBob.read(d), a) for _, a, d in self.sent if frames.isFrame(d)]

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
            self.assertEqual(messages.parseIndex(message), 0xA11CE5)
            self.assertTrue(stun.verifyIntegrity(datagram, KEY))

    def test_relayedSourceProbedDirectly(self):
        """
        Where bob comes through our relay from, at the IP the stage manager
        saw him at, becomes a direct candidate, probed from the socket; a
        port of another IP does not.
        """
        relay = ("192.0.2.10", 3478)
        here, elsewhere = ("203.0.113.1", 7000), ("192.0.2.99", 7000)
        self.punch.start()
        self.assertTrue(self.probeFromBob(RelayedSource(here, relay)))
        self.assertTrue(self.probeFromBob(RelayedSource(elsewhere, relay)))
        self.rounds(1)
        direct = [c.address for c in self.punch.candidates if c.kind == PEER_REFLEXIVE]
        self.assertEqual(direct, [here])
        probed = [a for m, a, _ in self.sent if m is not None and m.messageClass == stun.REQUEST]
        self.assertIn(here, probed)
        self.assertNotIn(elsewhere, probed)

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
        self.probeFromBob(PUBLIC_ADDRESS)
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
        self.assertFalse(self.probeFromBob(PUBLIC_ADDRESS, b"x" * 16))
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
        self.probeFromBob(source)
        self.sent.clear()
        self.rounds(6)
        self.assertEqual(
            [a for m, a, _ in self.sent if m.messageClass == stun.REQUEST].count(source), 6
        )

    def test_victimsOfForgedIntroductionGetBudgetOnly(self):
        """
        An introduction naming one public and eight local addresses that
        never answer brings them at most the 4.5 KiB budget over the whole
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
        self.assertLessEqual(total, 4608)
        self.assertEqual(total, punch.unheardBytesSent)
        for victim in victims:
            self.assertLessEqual(sum(len(d) for d, a in sent if a == victim), 4608 // 9)
            self.assertGreaterEqual(len([a for _, a in sent if a == victim]), 6)

    def test_wrongKeyIgnored(self):
        """
        An answer that is not authenticated with the punch key is not ours.
        """
        self.punch.start()
        probe = self.sent[0][0]
        datagram = messages.encodeProbeAnswer(
            probe.transactionID, ("198.51.100.1", 5000), b"x" * 16, BOB_INDEX
        )
        self.assertFalse(self.punch.handle(datagram, stun.decode(datagram), LOCAL_ADDRESS))
        self.assertEqual(self.punch.state, PUNCHING)

    def test_unknownTransactionIgnored(self):
        """
        An authenticated answer to a probe never sent is not ours.
        """
        self.punch.start()
        datagram = messages.encodeProbeAnswer(b"\x01" * 12, ("198.51.100.1", 5000), KEY, BOB_INDEX)
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
        probe = messages.encodeProbe(txid, "alice", "bob", KEY, BOB_INDEX)
        self.assertTrue(self.punch.handle(probe, stun.decode(probe), source))
        answer, address, datagram = self.sent[0]
        self.assertEqual((answer.messageClass, answer.transactionID, address), (stun.SUCCESS, txid, source))
        self.assertEqual(messages.parseIndex(answer), 0xA11CE5)
        self.assertEqual(stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), txid), source)
        self.assertTrue(stun.verifyIntegrity(datagram, KEY))
        self.assertEqual(self.sent[1][1], source)
        self.assertEqual(self.sent[1][0].messageClass, stun.REQUEST)
        self.assertIn(source, [c.address for c in self.punch.candidates])

    def test_dataAndKeepalives(self):
        """
        With the path up, what is written goes to the selected candidate in
        frames for bob's index, what bob sends reaches the receiver, and a
        keepalive goes out every 5 s.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.sent.clear()
        for _ in range(10):
            self.clock.advance(1)
            self.punch.write(b"hello \x00\xff")
            self.assertTrue(self.punch.frameReceived(self.fromBob.frame(b"hi"), LOCAL_ADDRESS))
        self.assertEqual(self.sentFrames(), [(b"hello \x00\xff", LOCAL_ADDRESS)] * 10)
        self.assertEqual(
            [frames.receiverIndex(d) for _, _, d in self.sent if frames.isFrame(d)], [BOB_INDEX] * 10
        )
        self.assertEqual([m.method for m, _, _ in self.sent if m is not None], [stun.BINDING] * 2)
        self.assertEqual(self.observer.events.count(("data", b"hi", LOCAL_ADDRESS)), 10)

    def test_dataIsProofOfLife(self):
        """
        A peer whose keepalive answers are all lost, but whose frames come,
        keeps the path up.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        for _ in range(60):
            self.clock.advance(1)
            self.punch.frameReceived(self.fromBob.frame(b"hi"), LOCAL_ADDRESS)
        self.assertEqual((self.punch.state, self.observer.events[0]), (UP, "up"))
        self.assertNotIn("lost", self.observer.events)
        # The keepalives still go out, and silence still loses the path.
        keepalives = [m for m, _, _ in self.sent if m is not None and m.messageClass == stun.REQUEST]
        self.assertGreaterEqual(len(keepalives), 12)
        self.clock.advance(20)
        self.assertEqual(self.observer.events[-1], "lost")

    def test_badFramesRefused(self):
        """
        A frame bob did not make, or one replayed, raises
        L{frames.FrameError} with its reason and reaches nobody.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        good = self.fromBob.frame(b"hi")
        forged = frames.encode(frames.frameKey(b"x" * 16, "bob", "alice"), 0xA11CE5, 1, b"bad")
        self.assertTrue(self.punch.frameReceived(good, LOCAL_ADDRESS))
        for datagram, reason in ((good, frames.REPLAYED), (forged, frames.UNAUTHENTICATED)):
            with self.assertRaises(frames.FrameError) as caught:
                self.punch.frameReceived(datagram, LOCAL_ADDRESS)
            self.assertEqual(caught.exception.reason, reason)
        self.assertEqual([e for e in self.observer.events if e[0] == "data"], [("data", b"hi", LOCAL_ADDRESS)])

    def test_probeWithoutIndexInvalid(self):
        """
        An authenticated probe without bob's index is refused as invalid.
        """
        self.punch.start()
        probe = stun.encode(
            stun.Message(stun.BINDING, stun.REQUEST, bytes(12), ((stun.USERNAME, b"alice:bob"),)),
            integrityKey=KEY,
            fingerprint=True,
        )
        self.assertRaises(messages.InvalidMessage, self.punch.handle, probe, stun.decode(probe), LOCAL_ADDRESS)

    def test_writeTooLarge(self):
        """
        A write larger than a frame carries raises L{ValueError}, and
        nothing is sent.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.sent.clear()
        self.punch.write(b"x" * frames.MAX_PAYLOAD_BYTES)
        self.assertRaises(ValueError, self.punch.write, b"x" * (frames.MAX_PAYLOAD_BYTES + 1))
        self.assertEqual(len(self.sent), 1)

    def moveBob(self, newAddress):
        """
        Bring the path up over bob's public address, then have his frames
        come from C{newAddress}, as after his NAT rebinds.
        """
        self.punch.start()
        self.answer(PUBLIC_ADDRESS)
        self.clock.advance(1)
        self.sent.clear()
        self.punch.frameReceived(self.fromBob.frame(b"moved"), newAddress)

    def test_movedPort(self):
        """
        Frames from a new port of bob's get it probed at once; when it
        answers, the path moves there, with one pathMoved, and the frames
        written go there.
        """
        moved = (PUBLIC_ADDRESS[0], 40000)
        self.moveBob(moved)
        self.assertEqual([(m.messageClass, a) for m, a, _ in self.sent], [(stun.REQUEST, moved)])
        self.assertTrue(self.answer(moved))
        self.assertEqual(self.punch.selected.address, moved)
        self.assertEqual(self.observer.events[-2:], [("data", b"moved", moved), ("moved", PUBLIC, "peer-reflexive")])
        self.sent.clear()
        self.punch.write(b"to the new port")
        self.assertEqual(self.sentFrames(), [(b"to the new port", moved)])

    def test_movedAgainSameKind(self):
        """
        After moving to a peer-reflexive address, a move to another one of
        the same kind is followed too.
        """
        first, second = (PUBLIC_ADDRESS[0], 40000), (PUBLIC_ADDRESS[0], 40001)
        self.moveBob(first)
        self.answer(first)
        self.punch.frameReceived(self.fromBob.frame(b"again"), second)
        self.answer(second)
        self.assertEqual(self.punch.selected.address, second)
        self.assertEqual([e for e in self.observer.events if e[0] == "moved"], [("moved", PUBLIC, "peer-reflexive"), ("moved", "peer-reflexive", "peer-reflexive")])

    def test_notMovedWhileOldAddressSpeaks(self):
        """
        When frames keep coming from the selected address too, an answer
        from the other address does not move the path.
        """
        first, second = (PUBLIC_ADDRESS[0], 40000), (PUBLIC_ADDRESS[0], 40001)
        self.moveBob(first)
        self.answer(first)
        self.punch.frameReceived(self.fromBob.frame(b"x"), second)
        self.punch.frameReceived(self.fromBob.frame(b"y"), first)
        self.answer(second)
        self.assertEqual(self.punch.selected.address, first)

    def test_strayProbedOncePerInterval(self):
        """
        However fast frames come from a new address, it is probed at most
        once a probe interval.
        """
        moved = (PUBLIC_ADDRESS[0], 40000)
        self.moveBob(moved)
        for _ in range(100):
            self.punch.frameReceived(self.fromBob.frame(b"flood"), moved)
        self.clock.advance(0.05)
        self.punch.frameReceived(self.fromBob.frame(b"later"), moved)
        self.assertEqual([a for m, a, _ in self.sent if m is not None], [moved, moved])

    def test_worseAddressIgnored(self):
        """
        With the path up over the local address, frames that come by a
        worse one (bob's public address, hairpinned) neither probe it nor
        move the path.
        """
        self.punch.start()
        self.answer(LOCAL_ADDRESS)
        self.clock.advance(1)
        self.sent.clear()
        self.punch.frameReceived(self.fromBob.frame(b"x"), PUBLIC_ADDRESS)
        self.assertEqual(self.sent, [])
        self.assertEqual(self.punch.selected.address, LOCAL_ADDRESS)

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
        self.assertFalse(self.punch.frameReceived(self.fromBob.frame(b"hi"), LOCAL_ADDRESS))
        self.assertFalse(self.probeFromBob(LOCAL_ADDRESS))
