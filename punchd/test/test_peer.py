"""
Tests for L{punchd.peer} and L{punchd.punching}: whole scenarios of a stage
manager and two peers, over L{punchd.testing}'s simulated NATs.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import frames, messages, stun
from punchd.greeter import RECEIVED_KEPT
from punchd.peer import PeerProtocol
from punchd.interfaces import IPath, IPathObserver, IPathReceiver, IPeer
from punchd.punching import FAILED, LOCAL, PEER_REFLEXIVE, PUBLIC, UP
from punchd.registration import NOT_ANSWERING_AFTER
from punchd.test.helpers import SERVER, World
from punchd.test.optional import given, settings, st
from punchd.testing import (
    ADDRESS_DEPENDENT,
    SEQUENTIAL,
    fullCone,
    portRestrictedCone,
    restrictedCone,
    symmetric,
)

NATS = {
    "no NAT": None,
    "full cone": fullCone(),
    "restricted cone": restrictedCone(),
    "port-restricted cone": portRestrictedCone(),
    "address-dependent mapping": portRestrictedCone(mapping=ADDRESS_DEPENDENT),
    "symmetric": symmetric(),
}

#: Each of L{NATS} as a part of a method name.
NAT_NAMES = {
    "no NAT": "noNAT",
    "full cone": "fullCone",
    "restricted cone": "restrictedCone",
    "port-restricted cone": "portRestrictedCone",
    "address-dependent mapping": "addressDependentMapping",
    "symmetric": "symmetric",
}

#: The pairs that cannot punch: a NAT that maps per destination against one
#: that filters by address and port, or against another such NAT.
ENDPOINT_DEPENDENT = {"address-dependent mapping", "symmetric"}
PORT_FILTERING = {"port-restricted cone", "address-dependent mapping", "symmetric"}


def connects(a, b):
    return not (
        (a in ENDPOINT_DEPENDENT and b in PORT_FILTERING)
        or (b in ENDPOINT_DEPENDENT and a in PORT_FILTERING)
    )


def pairTest(a, b):
    """
    The test of alice behind C{a} and bob behind C{b}, two of L{NATS}.
    """

    def test(self):
        self.assertOutcome(a, b)

    outcome = "connect" if connects(a, b) else "fail cleanly, each peer reporting it"
    test.__name__ = f"test_{NAT_NAMES[a]}_{NAT_NAMES[b]}"
    test.__qualname__ = f"NATMatrixTests.{test.__name__}"
    test.__doc__ = f"Alice behind {a} and bob behind {b} {outcome}."
    return test


class PeerInterfaceTests(SynchronousTestCase):
    def test_interfaces(self):
        """
        A peer offers dialects what L{IPeer} says, and watches its path as
        an L{IPathObserver} and L{IPathReceiver}; its path, once up, is an
        L{IPath}.
        """
        world = World(None, None)
        world.start(gap=1)
        world.network.advance(3)
        for peer in (world.alice, world.bob):
            verifyObject(IPeer, peer)
            verifyObject(IPathObserver, peer)
            verifyObject(IPathReceiver, peer)
            verifyObject(IPath, peer.punch)
            self.assertEqual(peer.punch.state, UP)


    def test_applicationOfTheInterfacesOnly(self):
        """
        An application that is only an L{IPathObserver} and an
        L{IPathReceiver}, without a C{stop} method, is told of its path,
        and its peer stops cleanly.
        """
        @implementer(IPathObserver, IPathReceiver)
        class Minimal:
            def __init__(self):
                self.ups = []

            def pathUp(self, path):
                self.ups.append(path)

            def pathMoved(self, path, previous):
                pass

            def pathLost(self, path):
                pass

            def punchFailed(self, path):
                pass

            def dataReceived(self, path, data, source):
                pass

        world = World(None, None)
        world.startPeer("alice", "bob", 5000)
        application = Minimal()
        verifyObject(IPathObserver, application)
        verifyObject(IPathReceiver, application)
        bob = PeerProtocol(world.bobHost, SERVER, "bob", "alice", application=application)
        port = world.bobHost.listenUDP(6000, bob)
        world.network.advance(3)
        self.assertEqual(application.ups, [bob.punch])
        port.stopListening()
        self.assertEqual(world.bobHost.getDelayedCalls(), [])


class IntroductionTimingTests(SynchronousTestCase):
    """
    How soon peers punch and connect after the second registration.
    """

    def test_punchingWithinTwoRoundTrips(self):
        """
        Both peers start punching within two server round trips of the
        second peer's registration, one to prove its address and one to be
        introduced: nobody waits for a refresh.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        start = world.start(gap=10)
        rtt = world.serverRoundTrip(world.bobHost, world.natB)
        world.network.advance(2)
        firstProbe = {
            name: min(
                d.sentAt for d in world.network.traffic
                if d.sender is host and d.destination != SERVER
            )
            for name, host in (("alice", world.aliceHost), ("bob", world.bobHost))
        }
        for name, sentAt in firstProbe.items():
            self.assertLessEqual(sentAt - start, 2 * rtt + 1e-9, name)

    def test_pathUpWithinTwoRoundTripsAndAPunch(self):
        """
        With 50 ms per link through two port-restricted NATs, both peers
        report the path up within two server round trips of the second
        registration (the cookie challenge, then the introduction) and the
        punch's probe and answer, 3 1/3 server round trips in all.
        """
        world = World(portRestrictedCone(), portRestrictedCone(), latency=0.05)
        start = world.start(gap=10)
        rtt = world.serverRoundTrip(world.bobHost, world.natB)
        world.network.advance(10)
        for name in ("alice", "bob"):
            [up] = world.when(name, "pathUp")
            self.assertLessEqual(up - start, 2 * rtt + world.alice.punch.rtt + 1e-9, name)

    def test_roundTripMeasured(self):
        """
        The path's round trip is measured from probe to answer: four links
        each way at 50 ms.
        """
        world = World(portRestrictedCone(), portRestrictedCone(), latency=0.05)
        world.start()
        world.network.advance(5)
        self.assertAlmostEqual(world.alice.punch.rtt, 0.4)
        self.assertAlmostEqual(world.bob.punch.rtt, 0.4)


class NATMatrixTests(SynchronousTestCase):
    """
    Every ordered pair of NAT kinds, with its expected outcome: one test
    each, as C{test_symmetric_fullCone}.  Every pair of endpoint-independent
    mappings connects; an endpoint-dependent mapping connects to no NAT, a
    full cone and a restricted cone; the other pairs fail cleanly, each
    peer reporting it.
    """

    locals().update((t.__name__, t) for t in (pairTest(a, b) for a in NATS for b in NATS))

    def assertOutcome(self, a, b):
        world = World(NATS[a], NATS[b], latency=0.02)
        world.start()
        world.network.advance(12)
        label = f"alice behind {a}, bob behind {b}"
        if connects(a, b):
            for name, peer, other in (("alice", world.alice, "bob"), ("bob", world.bob, "alice")):
                self.assertEqual(peer.punch.state, UP, f"{label}: {name}")
                self.assertEqual(world.when(name, "punchFailed"), [], label)
                texts = {text for text, _ in peer.application.received}
                self.assertEqual(
                    texts,
                    {f"This is a direct P2P message from {other} to {name}"},
                    label,
                )
            # The stage manager carried none of the direct traffic.
            self.assertEqual(
                [d for d in world.network.delivered()
                 if frames.isFrame(d.data) and SERVER in (d.destination, d.deliveredTo)],
                [],
            )
        else:
            for name, peer in (("alice", world.alice), ("bob", world.bob)):
                self.assertEqual(list(peer.application.received), [], label)
                self.assertEqual(world.when(name, "pathUp"), [], label)
                self.assertEqual(len(world.when(name, "punchFailed")), 1, f"{label}: {name}")
                self.assertEqual(peer.punch.state, FAILED, label)
        return world

    def test_peerReflexive(self):
        """
        A peer behind a full cone learns the symmetric NAT's port for it from
        its probe, and the path runs over that address.
        """
        world = self.assertOutcome("symmetric", "full cone")
        selected = world.bob.punch.selected
        self.assertEqual(selected.kind, PEER_REFLEXIVE)
        self.assertEqual(selected.address[0], "198.51.100.1")
        self.assertNotEqual(selected.address, world.alice.publicAddress)
        self.assertEqual(world.alice.punch.selected.kind, PUBLIC)

    def test_failureReport(self):
        """
        A pair that cannot connect is reported with the peer's name, every
        address tried, and what may be the cause.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertOutcome("symmetric", "port-restricted cone")
        [report] = [
            e for e in events
            if e["log_format"].startswith("Could not reach") and e["peer"] == "bob"
        ]
        self.assertIn("203.0.113.1:6000 (public)", report["candidates"])
        # Bob's local address is on a network alice is not on: not tried.
        self.assertNotIn("10.0.2.2", report["candidates"])
        self.assertIn("symmetric NAT", report["log_format"])

    def test_retryAtNextIntroduction(self):
        """
        After a failed punch the peers seek again at their next refresh, and
        are introduced and punch again.
        """
        world = World(symmetric(), symmetric(), latency=0.02)
        world.start()
        world.network.advance(30)
        # Once at start and again at each refresh (every 18 to 22 s): two
        # or three in 30 s, as the jitter falls.
        self.assertIn(world.server.stats["introductions"], (2, 3))
        self.assertGreaterEqual(len(world.when("alice", "punchFailed")), 2)


class LocalPathTests(SynchronousTestCase):
    """
    Two peers behind one NAT.
    """

    def test_withoutHairpinning(self):
        """
        Behind one NAT that does not hairpin, the peers connect over their
        local addresses.
        """
        world = World(sameNAT=portRestrictedCone(hairpinning=False))
        world.start()
        world.network.advance(5)
        self.assertEqual(world.alice.punch.selected.address, ("10.0.1.3", 6000))
        self.assertEqual(world.bob.punch.selected.address, ("10.0.1.2", 5000))
        self.assertEqual(len(world.alice.application.received), len(world.bob.application.received))
        self.assertGreater(len(world.alice.application.received), 2)

    def test_localPreferred(self):
        """
        Behind one NAT that hairpins, both the public and the local path
        work, and the local one is chosen.
        """
        world = World(sameNAT=fullCone(hairpinning=True), latency=0.05)
        world.start()
        world.network.advance(5)
        for peer in (world.alice, world.bob):
            self.assertEqual(peer.punch.selected.kind, LOCAL)


class PathLifeTests(SynchronousTestCase):
    """
    Keeping a path, losing it and finding it again.
    """

    def test_keepalivesHoldMapping(self):
        """
        Keepalives hold a NAT mapping that times out after 10 s of silence,
        with no direct messages to help.
        """
        world = World(
            portRestrictedCone(mappingTimeout=10),
            portRestrictedCone(mappingTimeout=10),
            messageInterval=1000,
            keepaliveInterval=4,
            pathTimeout=12,
        )
        world.start()
        world.network.advance(120)
        for name, peer in (("alice", world.alice), ("bob", world.bob)):
            self.assertEqual(peer.punch.state, UP, name)
            self.assertEqual(world.when(name, "pathLost"), [], name)
            self.assertEqual(len(world.when(name, "pathUp")), 1, name)

    def test_withoutKeepalivesMappingExpires(self):
        """
        The same NAT drops the path when keepalives are far apart: proof
        that the keepalives are what held it.
        """
        world = World(
            portRestrictedCone(mappingTimeout=10),
            portRestrictedCone(mappingTimeout=10),
            messageInterval=1000,
            keepaliveInterval=30,
            pathTimeout=12,
        )
        world.start()
        world.network.advance(120)
        self.assertNotEqual(world.when("alice", "pathLost"), [])

    def test_lossAndRecovery(self):
        """
        When the path goes silent both peers report it lost within the path
        timeout and a keepalive, ask for a new introduction, and reconnect
        once the network is back.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        cut = world.clock.seconds()
        world.natB.loss = 1.0
        world.network.advance(25)
        for name in ("alice", "bob"):
            [lost] = world.when(name, "pathLost")
            self.assertLessEqual(lost - cut, 15 + 5, name)
        world.natB.loss = 0.0
        world.network.advance(25)
        for name, peer in (("alice", world.alice), ("bob", world.bob)):
            self.assertEqual(peer.punch.state, UP, name)
            # Up at the start, and again (once, or twice if a refresh
            # crossed the first new punch) after the loss.
            self.assertIn(len(world.when(name, "pathUp")), (2, 3), name)
        self.assertGreaterEqual(world.server.stats["introductions"], 2)

    def test_serverRestart(self):
        """
        After the stage manager restarts with an empty phonebook, both peers
        are back in it within one refresh interval, and their path never
        dropped.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        world.serverPort.stopListening()
        world.network.advance(3)
        server = world.startServer()
        world.network.advance(world.interval)
        self.assertEqual(sorted(e.name for e in server.phonebook), ["alice", "bob"])
        for name, peer in (("alice", world.alice), ("bob", world.bob)):
            self.assertEqual(peer.punch.state, UP, name)
            self.assertEqual(world.when(name, "pathLost"), [], name)

    def test_peerRestart(self):
        """
        When bob restarts on another port, having said goodbye, the stage
        manager introduces the pair again and alice moves to bob's new
        session.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        world.bob.leave()
        world.bobPort.stopListening()
        world.network.advance(1)
        world.startPeer("bob", "alice", 6001)
        world.network.advance(5)
        self.assertEqual(world.alice.punch.selected.address[1], world.bob.publicAddress[1])
        self.assertEqual(world.alice.punch.state, UP)
        self.assertEqual(world.bob.punch.state, UP)

    def test_peerCrash(self):
        """
        When bob dies without a goodbye and comes back on another port, the
        stage manager refuses his name, which the old session still holds,
        says so plainly, and takes it once the old entry has expired.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        world = World(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        world.bobPort.stopListening()
        world.startPeer("bob", "alice", 6001)
        world.network.advance(1)
        [refusal] = [e for e in events if "refused" in e["log_format"]]
        self.assertEqual(refusal["code"], messages.NAME_TAKEN)
        self.assertIn("only the holder of its secret", refusal["reason"])
        world.network.advance(3 * world.interval + world.interval)
        self.assertEqual(world.bob.punch.state, UP)
        self.assertEqual(world.alice.punch.selected.address[1], world.bob.publicAddress[1])

    def test_movedPort(self):
        """
        When bob's NAT forgets its mappings and gives him a new port, alice's
        path follows him there with one pathMoved, both peers' messages keep
        coming, and neither path is lost or punched again.
        """
        world = World(restrictedCone(), portRestrictedCone(allocation=SEQUENTIAL))
        world.start()
        world.network.advance(5)
        moves = {}
        for name, peer in (("alice", world.alice), ("bob", world.bob)):
            moves[name] = []
            original = peer.pathMoved

            def recorded(path, previous, moved=moves[name], original=original):
                moved.append((previous.address, path.selected.address))
                original(path, previous)

            peer.pathMoved = recorded
        old = world.alice.punch.selected.address
        world.natB.clearMappings()
        world.network.advance(3)
        new = world.natB.mappingFor("10.0.2.2", 6000).external
        self.assertNotEqual(new, old)
        self.assertEqual(moves, {"alice": [(old, new)], "bob": []})
        received = {name: len(peer.application.received) for name, peer in (("alice", world.alice), ("bob", world.bob))}
        world.network.advance(5)
        for name, peer in (("alice", world.alice), ("bob", world.bob)):
            self.assertGreaterEqual(len(peer.application.received) - received[name], 5, name)
            self.assertEqual(world.when(name, "pathLost"), [], name)
            self.assertEqual(len(world.when(name, "pathUp")), 1, name)
        self.assertEqual(world.alice.punch.selected.address, new)
        self.assertEqual(world.server.stats["introductions"], 1)

    def test_lossyNetwork(self):
        """
        With 5% loss on every link and 20 ms per link, two port-restricted
        NATs still connect.
        """
        for seed in range(5):
            world = World(portRestrictedCone(), portRestrictedCone(), latency=0.02, loss=0.05, seed=seed)
            world.start()
            world.network.advance(10)
            self.assertEqual((world.alice.punch.state, world.bob.punch.state), (UP, UP), seed)

    def test_receivedBounded(self):
        """
        A peer that runs for long keeps only the last direct messages it
        received, not all of them.
        """
        world = World(portRestrictedCone(), portRestrictedCone(), latency=0.01)
        world.start()
        world.network.advance(RECEIVED_KEPT * 1.5)
        self.assertEqual(len(world.alice.application.received), RECEIVED_KEPT)

    def test_stopLeavesNothing(self):
        """
        A stopped peer tells the stage manager to forget it and leaves no
        delayed call behind.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        for peer, port, host in (
            (world.alice, world.alicePort, world.aliceHost),
            (world.bob, world.bobPort, world.bobHost),
        ):
            peer.leave()
            port.stopListening()
            self.assertEqual(host.getDelayedCalls(), [])
        world.network.advance(1)
        self.assertEqual(len(world.server.phonebook), 0)


class ReflectionTests(SynchronousTestCase):
    """
    Addresses a peer is told of but never hears from.
    """

    def _withDecoys(self, world, decoys):
        """
        Start alice, then bob listing C{decoys} as local addresses besides
        his own, which nobody answers at.

        @return: The time bob started, and a server round trip of his.
        """
        world.startPeer("alice", "bob", 5000)
        world.network.advance(10)
        start = world.clock.seconds()
        bob = PeerProtocol(
            world.bobHost, SERVER, "bob", "alice",
            localHosts=(world.bobHost.address,) + decoys, interval=world.interval,
        )
        events = world.events["bob"] = []
        world._record(bob, "pathUp", events)
        world.bob, world.bobPort = bob, world.bobHost.listenUDP(6000, bob)
        rtt = world.serverRoundTrip(world.bobHost, world.natB)
        world.network.advance(10)
        return start, rtt

    def _toDecoys(self, world, decoys):
        return [
            d for d in world.network.traffic
            if d.sender is world.aliceHost and d.destination[0] in decoys
        ]

    def test_decoyLocalAddressesGetBudgetOnly(self):
        """
        A contact behind the same NAT that lists seven local addresses
        besides its own, which nobody answers at, gets them at most their
        shares of the punch's budget, and the pair connects as fast.
        """
        world = World(sameNAT=portRestrictedCone(hairpinning=False), latency=0.05)
        decoys = tuple(f"10.0.1.{i}" for i in range(100, 107))
        start, rtt = self._withDecoys(world, decoys)
        [up] = world.when("alice", "pathUp")
        self.assertLessEqual(up - start, 2 * rtt + world.alice.punch.rtt + 1e-9)
        toDecoys = self._toDecoys(world, decoys)
        self.assertGreater(len(toDecoys), 0)
        self.assertLessEqual(sum(len(d.data) for d in toDecoys), 7 * (4608 // 9))

    def test_localAddressesOfAnotherNetworkIgnored(self):
        """
        The local addresses of a contact behind another public address than
        this peer's are on a network this peer is not on: none is probed,
        however many the contact lists, and the pair connects as fast.
        """
        world = World(portRestrictedCone(), portRestrictedCone(), latency=0.05)
        decoys = tuple(f"10.0.2.{i}" for i in range(100, 107))
        start, rtt = self._withDecoys(world, decoys)
        [up] = world.when("alice", "pathUp")
        self.assertLessEqual(up - start, 2 * rtt + world.alice.punch.rtt + 1e-9)
        self.assertEqual(self._toDecoys(world, decoys + (world.bobHost.address,)), [])

    def test_globalLocalAddressesDropped(self):
        """
        A contact behind the same NAT that lists global addresses as local
        ones, which no network behind a NAT has, gets none of them probed,
        and each is counted as a drop.
        """
        world = World(sameNAT=portRestrictedCone(hairpinning=False), latency=0.05)
        decoys = ("192.0.2.50", "8.8.8.8")
        self._withDecoys(world, decoys)
        self.assertEqual(self._toDecoys(world, ("8.8.8.8",)), [])
        self.assertEqual(world.alice.drops.counts["unusable local address"], 1)


class RegistrationTests(SynchronousTestCase):
    """
    A peer's registrations.
    """

    def test_publicAddressLearned(self):
        """
        The peer learns the public address its NAT gave it.
        """
        world = World(symmetric(), None)
        world.startPeer("alice", "bob", 5000)
        world.network.advance(1)
        mapping = world.natA.mappingFor("10.0.1.2", 5000, remote=SERVER)
        self.assertEqual(world.alice.publicAddress, mapping.external)

    def test_refreshEveryInterval(self):
        """
        The peer registers at start, proves its address with the cookie of
        the first answer at once, and registers every interval.
        """
        world = World(None, None, interval=20)
        world.startPeer("alice", "bob", 5000)
        # Three refreshes at most 22 s apart, and not a fourth (at 54 s or
        # later after the first).
        world.network.advance(67)
        sent = [
            d.sentAt for d in world.network.traffic
            if d.destination == SERVER and stun.decode(d.data).method == messages.REGISTER
        ]
        # Each interval is jittered by up to a tenth either way.
        self.assertEqual(sent[:2], [0, 0.2])
        self.assertEqual(len(sent), 5)
        for before, after in zip(sent[1:], sent[2:]):
            self.assertTrue(18 <= after - before <= 22 or 18 <= after - int(before) <= 22, sent)

    def test_backoffAndSilentServer(self):
        """
        An unanswered registration is sent again after 0.5, 1, 2, 4... s,
        up to the interval, and the silence is reported plainly once.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        world = World(None, None, interval=10)
        world.serverPort.stopListening()
        world.startPeer("alice", "bob", 5000)
        world.network.advance(40)
        sent = [
            d.sentAt for d in world.network.traffic
            if d.destination == SERVER and stun.decode(d.data).method == messages.REGISTER
        ]
        # Each delay is jittered by up to a tenth either way.
        delays = [after - before for before, after in zip(sent, sent[1:7])]
        for delay, expected in zip(delays, [0.5, 1, 2, 4, 8, 10]):
            self.assertTrue(0.9 * expected <= delay <= 1.1 * expected, sent)
        warnings = [e for e in events if "not answering" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["attempts"], NOT_ANSWERING_AFTER)

    def test_refusedRegistration(self):
        """
        A registration the stage manager refuses is reported with its
        reason.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        world = World(None, None)
        world.startPeer("alice", "bob", 5000)
        world.network.advance(1)
        world.alice.registrar.name = "bad name"
        world.alice.register()
        world.network.advance(1)
        [refusal] = [e for e in events if "refused" in e["log_format"]]
        self.assertEqual(
            (refusal["code"], refusal["reason"]),
            (400, "name 'bad name' has white space or control characters"),
        )


class HostileInputTests(SynchronousTestCase):
    """
    Datagrams a peer must not believe.
    """

    def test_garbageDropped(self):
        """
        Malformed datagrams, forged probes and messages without the punch
        key are dropped and counted, and change nothing.
        """
        world = World(fullCone(), fullCone())
        world.start()
        world.network.advance(5)
        mallory = world.network.host("192.0.2.66")
        from twisted.internet.protocol import DatagramProtocol

        port = mallory.listenUDP(7000, DatagramProtocol())
        target = world.alice.publicAddress
        txid = stun.newTransactionID()
        wrongKey = b"\x00" * 16
        selected = world.alice.punch.selected
        received = len(world.alice.application.received)
        for datagram in [
            b"",
            b"hello",
            b"\x00\x01\x00\x00" + b"\x00" * 8,
            messages.encodeProbe(txid, "alice", "bob", wrongKey, 1),
            messages.encodeProbeAnswer(txid, ("192.0.2.66", 7000), wrongKey, 1),
            frames.encode(wrongKey, world.alice.punch.index, 0, b"injected"),
            messages.encodeIntroduction(
                txid, messages.Introduction("bob", ("192.0.2.66", 7000), (), wrongKey), wrongKey
            ),
        ]:
            port.write(datagram, target)
        before = sum(world.alice.drops.counts.values())
        world.network.advance(0.5)
        self.assertEqual(sum(world.alice.drops.counts.values()) - before, 7)
        self.assertIs(world.alice.punch.selected, selected)
        self.assertNotIn("injected", [t for t, _ in list(world.alice.application.received)[received:]])
        self.assertEqual(world.alice.punch.state, UP)


class FrameDropTests(SynchronousTestCase):
    """
    Frames a peer drops, each counted by its reason.
    """

    def test_dropsCounted(self):
        """
        A frame for no path, one too short, and a replayed one are dropped
        and counted, and only the genuine frame reaches the application.
        """
        world = World(fullCone(), fullCone(), messageInterval=1000)
        world.start()
        world.network.advance(5)
        alice, punch = world.alice, world.alice.punch
        received = len(alice.application.received)
        # Past what bob sent: his greeting was frame 0.
        genuine = frames.encode(frames.frameKey(punch.key, "bob", "alice"), punch.index, 10**6, b"genuine")
        source = punch.selected.address
        for datagram in (
            genuine,
            genuine,
            frames.encode(b"k" * 32, punch.index ^ 1, 0, b"elsewhere"),
            genuine[:12],
        ):
            alice.datagramReceived(datagram, source)
        self.assertEqual(
            {reason: alice.drops.counts[reason] for reason in (frames.REPLAYED, frames.UNKNOWN_INDEX, frames.MALFORMED)},
            {frames.REPLAYED: 1, frames.UNKNOWN_INDEX: 1, frames.MALFORMED: 1},
        )
        self.assertEqual([t for t, _ in list(alice.application.received)[received:]], ["genuine"])
        self.assertEqual(punch.state, UP)


class FrameFuzzTests(SynchronousTestCase):
    """
    Mutated frames, with Hypothesis.
    """

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 59), st.integers(1, 255), st.binary(max_size=8))
    def test_mutatedFramesDropped(self, offset, flip, tail):
        """
        A genuine frame with a byte changed, or bytes added, is dropped and
        counted, never raises, and reaches nobody; the path stays up.
        """
        world = World(fullCone(), fullCone(), messageInterval=1000)
        world.start()
        world.network.advance(5)
        alice, punch = world.alice, world.alice.punch
        received = len(alice.application.received)
        genuine = bytearray(
            frames.encode(frames.frameKey(punch.key, "bob", "alice"), punch.index, 10**6, bytes(40))
        )
        genuine[offset] ^= flip
        before = sum(alice.drops.counts.values())
        alice.datagramReceived(bytes(genuine) + tail, punch.selected.address)
        self.assertEqual(sum(alice.drops.counts.values()), before + 1)
        self.assertEqual(len(alice.application.received), received)
        self.assertEqual(punch.state, UP)


def _unsigned(txid, introduction):
    """
    An introduction in the right format but without any MESSAGE-INTEGRITY,
    as anyone can send from the stage manager's address.
    """
    signed = stun.decode(messages.encodeIntroduction(txid, introduction, b"x" * 16))
    return stun.encode(
        stun.Message(
            signed.method,
            signed.messageClass,
            txid,
            tuple((t, v) for t, v in signed.attributes if t != stun.MESSAGE_INTEGRITY),
        ),
        fingerprint=True,
    )


class SpoofedIntroductionTests(SynchronousTestCase):
    """
    An attacker who sends from the stage manager's address cannot
    introduce a peer to anyone.
    """

    def setUp(self):
        self.world = World(fullCone(), fullCone())
        self.world.start()
        self.world.network.advance(5)
        self.alice = self.world.alice
        self.assertEqual(self.alice.punch.state, UP)
        self.punch = self.alice.punch
        self.selected = self.punch.selected

    def spoof(self, datagram):
        """
        Send C{datagram} to alice from the stage manager's address.
        """
        self.world.serverPort.write(datagram, self.alice.publicAddress)

    def forgeries(self):
        """
        Introductions of bob at the attacker's address: without a check,
        keyed with a secret of the attacker's, and keyed with the punch key.
        """
        attacker = messages.Introduction("bob", ("192.0.2.66", 7000), (), b"m" * 16)
        return [
            _unsigned(stun.newTransactionID(), attacker),
            messages.encodeIntroduction(
                stun.newTransactionID(), attacker, messages.introductionKey(b"w" * 16)
            ),
            messages.encodeIntroduction(stun.newTransactionID(), attacker, self.punch.key),
        ]

    def test_forgedIntroductionLeavesPathUp(self):
        """
        Forged introductions sent while alice is up with bob are dropped
        unacknowledged, and her path to bob stays as it is.
        """
        serverDrops = sum(self.world.server.drops.counts.values())
        for datagram in self.forgeries():
            self.spoof(datagram)
        self.world.network.advance(0.5)
        self.assertEqual(self.alice.drops.counts["unauthenticated introduction"], 3)
        self.assertIs(self.alice.punch, self.punch)
        self.assertIs(self.punch.selected, self.selected)
        self.assertEqual(self.punch.state, UP)
        # No acknowledgement reached the stage manager.
        self.assertEqual(sum(self.world.server.drops.counts.values()), serverDrops)

    def test_forgedIntroductionKeepsTalking(self):
        """
        Right after forged introductions alice still hears bob's messages,
        one a second.
        """
        for datagram in self.forgeries():
            self.spoof(datagram)
        self.world.network.advance(0.1)
        received = len(self.alice.application.received)
        self.world.network.advance(3)
        self.assertEqual(self.alice.punch.state, UP)
        self.assertGreaterEqual(len(self.alice.application.received) - received, 3)

    def test_signedIntroductionReplacesPath(self):
        """
        An introduction the stage manager signs for alice still replaces her
        path.
        """
        server = self.world.server
        entry = server.phonebook.lookup("alice", self.world.clock.seconds())
        key = b"n" * messages.PUNCH_KEY_BYTES
        introduction = messages.Introduction("bob", self.world.bob.publicAddress, (), key)
        server.sendIntroduction(
            entry, lambda txid, k: messages.encodeIntroduction(txid, introduction, k)
        )
        self.world.network.advance(0.5)
        self.assertIsNot(self.alice.punch, self.punch)
        self.assertEqual(self.alice.punch.key, key)
        self.assertEqual(self.alice.drops.counts["unauthenticated introduction"], 0)
