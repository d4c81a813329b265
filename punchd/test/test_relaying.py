"""
Tests for relayed candidates on a L{punchd.punching.Punch} and for
L{punchd.relaying}, with a clock and a recording send function.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.punching import PUBLIC, RELAYED, UP, Punch
from punchd.relaying import RelayedSource, directImpossible
from punchd.test.test_punching import Observer

KEY = b"k" * 16
PUBLIC_ADDRESS = ("203.0.113.1", 6000)
RELAYED_ADDRESS = ("192.0.2.10", 49152)
TURN = ("192.0.2.10", 3478)
SYMMETRIC = ("address-and-port-dependent", "address-and-port-dependent")
PORT_RESTRICTED = ("endpoint-independent", "address-and-port-dependent")
FULL_CONE = ("endpoint-independent", "endpoint-independent")


class RelayedCandidateTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.observer = Observer()
        self.punch = Punch(
            self.clock,
            lambda datagram, address: self.sent.append((stun.decode(datagram), address, datagram)),
            "alice",
            messages.Introduction("bob", PUBLIC_ADDRESS, (), KEY),
            self.observer,
            relayDelay=1.0,
        )
        self.punch.relayServer = TURN
        self.events = EventLoggingObserver.createWithCleanup(self, self.punch.log.observer)
        self.punch.start()
        self.punch.addCandidate(RELAYED_ADDRESS, RELAYED)

    def probesTo(self, address):
        return [m for m, a, _ in self.sent if a == address and m.method == stun.BINDING]

    def answer(self, address):
        probe = self.probesTo(address)[-1]
        datagram = messages.encodeProbeAnswer(probe.transactionID, ("198.51.100.1", 5000), KEY, 7)
        return self.punch.handle(datagram, stun.decode(datagram), address)

    def logged(self, text):
        return [e for e in self.events if text in e["log_format"]]

    def test_directFirst(self):
        """
        The relayed candidate is probed only once the relay delay has
        passed; the direct one from the start.
        """
        self.clock.pump([0.05] * 19)
        self.assertEqual(self.probesTo(RELAYED_ADDRESS), [])
        self.assertNotEqual(self.probesTo(PUBLIC_ADDRESS), [])
        self.clock.pump([0.05] * 2)
        self.assertNotEqual(self.probesTo(RELAYED_ADDRESS), [])

    def test_atOnce(self):
        """
        When the NATs rule direct out, the relay is probed at once, and the
        log says why the path is relayed.
        """
        self.punch.relayAtOnce("a direct path is impossible between a symmetric NAT and a symmetric NAT")
        self.clock.advance(0.05)
        self.assertEqual(len(self.probesTo(RELAYED_ADDRESS)), 1)
        self.answer(RELAYED_ADDRESS)
        self.assertEqual((self.punch.state, self.punch.kind), (UP, RELAYED))
        [event] = self.logged("relayed via TURN server")
        self.assertEqual(event["server"], "192.0.2.10:3478")
        self.assertEqual(
            event["why"], "a direct path is impossible between a symmetric NAT and a symmetric NAT"
        )
        self.assertEqual(self.logged("Direct path"), [])

    def test_movesToDirect(self):
        """
        Up on the relay, direct candidates are still probed; when one
        answers, the path moves there (pathMoved) and says it is direct.
        """
        self.clock.pump([0.05] * 21)
        self.answer(RELAYED_ADDRESS)
        self.assertEqual(self.observer.events, ["up"])
        [event] = self.logged("relayed via TURN server")
        self.assertEqual(event["why"], "no direct candidate answered within 1.0 s")
        before = len(self.probesTo(PUBLIC_ADDRESS))
        self.clock.pump([0.05] * 40)
        self.assertGreater(len(self.probesTo(PUBLIC_ADDRESS)), before)
        self.answer(PUBLIC_ADDRESS)
        self.assertEqual(self.observer.events, ["up", ("moved", RELAYED, PUBLIC)])
        self.assertEqual(self.punch.kind, PUBLIC)
        self.assertEqual(len(self.logged("the path moved off the TURN relay")), 1)

    def test_noFlapping(self):
        """
        Once direct, an answer from the relay does not move the path back,
        and keepalives go only to the direct candidate.
        """
        self.clock.pump([0.05] * 21)
        self.answer(RELAYED_ADDRESS)
        self.clock.pump([0.05] * 5)
        self.answer(PUBLIC_ADDRESS)
        self.answer(RELAYED_ADDRESS)
        self.assertEqual(self.punch.kind, PUBLIC)
        self.assertEqual(self.observer.events, ["up", ("moved", RELAYED, PUBLIC)])
        relayedBefore = len(self.probesTo(RELAYED_ADDRESS))
        self.clock.pump([1] * 20)
        self.assertEqual(len(self.probesTo(RELAYED_ADDRESS)), relayedBefore)

    def test_directBackgroundEnds(self):
        """
        On the relay, direct is tried until the punch timeout, then no
        more: only keepalives go out, to the relay.
        """
        self.clock.pump([0.05] * 21)
        self.answer(RELAYED_ADDRESS)
        self.clock.pump([0.05] * 100)
        count = len(self.probesTo(PUBLIC_ADDRESS))
        self.clock.pump([0.5] * 20)
        self.assertEqual(len(self.probesTo(PUBLIC_ADDRESS)), count)
        self.assertGreater(len(self.probesTo(RELAYED_ADDRESS)), 1)
        self.punch.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_probeThroughRelay(self):
        """
        A probe that came through our relay is answered back through it, and
        its source becomes a relayed candidate, probed at once.
        """
        source = RelayedSource(("198.51.100.1", 7000), TURN)
        probe = messages.encodeProbe(bytes(12), "alice", "bob", KEY, 7)
        self.assertTrue(self.punch.handle(probe, stun.decode(probe), source))
        answer, address, _ = self.sent[-2]
        self.assertEqual((answer.messageClass, address), (stun.SUCCESS, source))
        self.assertEqual(
            stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), answer.transactionID),
            ("198.51.100.1", 7000),
        )
        [candidate] = [c for c in self.punch.candidates if c.address == source]
        self.assertEqual(candidate.kind, RELAYED)
        self.assertEqual(self.sent[-1][1], source)
        self.answer(source)
        self.assertEqual(self.punch.kind, RELAYED)
        self.assertEqual(self.punch.getPeer().port, 7000)


class RelayedSourceTests(SynchronousTestCase):
    def test_notADirectAddress(self):
        """
        A relayed source equals no address reached directly, and names its
        peer and relay.
        """
        source = RelayedSource(PUBLIC_ADDRESS, TURN)
        self.assertNotEqual(source, PUBLIC_ADDRESS)
        self.assertEqual((source.peer, source.relay), (PUBLIC_ADDRESS, TURN))
        self.assertEqual((source[0], source[1]), PUBLIC_ADDRESS)


class DirectImpossibleTests(SynchronousTestCase):
    def test_verdicts(self):
        """
        Direct is ruled out only when one NAT maps per destination and the
        other filters by address and port, or either is not known.
        """
        self.assertEqual(
            directImpossible(SYMMETRIC, SYMMETRIC),
            "a direct path is impossible between a symmetric NAT and a symmetric NAT",
        )
        self.assertEqual(
            directImpossible(PORT_RESTRICTED, SYMMETRIC),
            "a direct path is impossible between a port-restricted cone NAT and a symmetric NAT",
        )
        self.assertIsNone(directImpossible(FULL_CONE, SYMMETRIC))
        self.assertIsNone(directImpossible(PORT_RESTRICTED, PORT_RESTRICTED))
        self.assertIsNone(directImpossible(None, SYMMETRIC))
