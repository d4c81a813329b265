"""
Peers relaying through TURN on L{punchd.testing}'s simulated network: a
stage manager offering a relay, L{punchd.testing.turn.FakeTurnServer}, and
peers behind simulated NATs.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.punching import PEER_REFLEXIVE, PUBLIC, RELAYED
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER, World
from punchd.testing import portRestrictedCone, symmetric
from punchd.testing.turn import FakeTurnServer
from punchd.turn import RelayOffer

TURN = ("192.0.2.20", 3478)
SECRET = b"the turn secret"


class RelayWorld(World):
    """
    A L{World} whose stage manager offers a TURN relay, with the fake TURN
    server on the public internet.
    """

    def __init__(self, *args, turnSecret=SECRET, **kwargs):
        self.turnSecret = turnSecret
        super().__init__(*args, **kwargs)
        self.clock.advance(1_700_000_000)
        self.turnHost = self.network.host(TURN[0])
        self.turn = FakeTurnServer(self.turnHost, SECRET)
        self.turnHost.listenUDP(TURN[1], self.turn)

    def startServer(self):
        server = StageManagerProtocol(
            self.serverHost,
            Phonebook(100, 3 * self.interval),
            turn=RelayOffer(TURN, self.turnSecret, "punchd"),
        )
        self.serverPort = self.serverHost.listenUDP(SERVER[1], server)
        return server


def recordMoves(world):
    """
    Record each pathMoved of alice's and bob's applications.

    @return: The list it goes to: C{(contact, previous kind, new kind)}.
    """
    moved = []
    for peer in (world.alice, world.bob):
        application = next(iter(peer.contacts.values())).application
        original = application.pathMoved

        def recorded(path, previous, original=original):
            moved.append((path.peerName, previous.kind, path.kind))
            original(path, previous)

        application.pathMoved = recorded
    return moved


class RelayPeerTests(SynchronousTestCase):
    def world(self, natA, natB, **kwargs):
        world = RelayWorld(natA, natB, **kwargs)
        self.peerEvents = EventLoggingObserver.createWithCleanup(self, PeerProtocol.log.observer)
        return world

    def introducedAt(self, world):
        return [
            d.time for d in world.network.delivered()
            if d.data[:1] in (b"\x00", b"\x01", b"\x02", b"\x03")
            and stun.decode(d.data).method == messages.INTRODUCE
        ][0]

    def test_symmetricPairRelayed(self):
        """
        Behind two symmetric NATs, both paths come up relayed within 2 s
        of the introduction, carry the direct messages, and report kind
        'relayed'.
        """
        world = self.world(symmetric(), symmetric())
        world.start()
        world.network.advance(4)
        introduced = self.introducedAt(world)
        for peer, other in ((world.alice, "bob"), (world.bob, "alice")):
            [up] = world.when(peer.name, "pathUp")
            self.assertLess(up - introduced, 2.0)
            self.assertEqual(peer.contacts[other].path.kind, RELAYED)
            self.assertNotEqual(peer.contacts[other].application.received, [])
        self.assertEqual(len(world.turn.allocations), 2)
        self.assertEqual(world.turn.requests["CreatePermission"], 2)

    def test_stopDeallocates(self):
        """
        A peer that stops deallocates on the TURN server and leaves no
        timer of its own.
        """
        world = self.world(symmetric(), symmetric())
        world.start()
        world.network.advance(4)
        world.alicePort.stopListening()
        world.bobPort.stopListening()
        world.network.advance(1)
        self.assertEqual(world.turn.allocations, {})
        self.assertEqual(world.aliceHost.getDelayedCalls(), [])

    def test_directPreferred(self):
        """
        Behind two port-restricted cones, with a relay on offer, the paths
        are direct and nothing is probed at a relayed address.
        """
        world = self.world(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(4)
        self.assertEqual(world.alice.contacts["bob"].path.kind, PUBLIC)
        self.assertEqual(world.bob.contacts["alice"].path.kind, PUBLIC)
        relayedProbes = [
            d for d in world.network.delivered()
            if d.destination[0] == TURN[0] and d.destination[1] != TURN[1]
        ]
        self.assertEqual(relayedProbes, [])

    def test_refusedCredentials(self):
        """
        A stage manager with the wrong TURN secret: each peer says the TURN
        server refused, with its code, and punches directly all the same.
        """
        world = self.world(portRestrictedCone(), portRestrictedCone(), turnSecret=b"wrong")
        world.start()
        world.network.advance(4)
        self.assertEqual(world.alice.contacts["bob"].path.kind, PUBLIC)
        refusals = [
            e for e in self.peerEvents if "gave no relayed address" in e["log_format"]
        ]
        self.assertEqual(
            [e["why"] for e in refusals], ["Allocate refused: 401 Unauthorized"] * 2
        )

    def test_forgedCandidate(self):
        """
        A CANDIDATE from the stage manager's address not signed with the
        peer's introduction key is dropped, unanswered, and changes nothing.
        """
        world = self.world(symmetric(), symmetric())
        world.start()
        world.network.advance(2)
        path = world.alice.contacts["bob"].path
        txid = stun.newTransactionID()
        world.serverPort.write(
            messages.encodeCandidate(
                txid, messages.RelayCandidate("bob", ("192.0.2.99", 4000)), b"x" * 16
            ),
            world.alice.publicAddress,
        )
        world.network.advance(0.5)
        self.assertNotIn(("192.0.2.99", 4000), [c.address for c in path.candidates])
        self.assertEqual(dict(world.alice.drops.counts), {"unauthenticated candidate": 1})


class RelayToDirectTests(SynchronousTestCase):
    def test_movesToDirectWhenTheNATsChange(self):
        """
        Relayed between two symmetric NATs, the path moves to direct when
        both NATs turn into full cones within the punch timeout (a router
        reconfigured): one pathMoved off the relay on each side, said in
        the log, never one back to it, and no more moves later.
        """
        from punchd.natprobe import ENDPOINT_INDEPENDENT

        world = RelayWorld(symmetric(), symmetric())
        events = EventLoggingObserver.createWithCleanup(self, PeerProtocol.log.observer)
        world.start()
        moved = recordMoves(world)
        world.network.advance(2.5)
        self.assertEqual(world.alice.contacts["bob"].path.kind, RELAYED)
        for nat in (world.natA, world.natB):
            nat.mapping = nat.filtering = ENDPOINT_INDEPENDENT
        world.network.advance(4)
        self.assertIn(world.alice.contacts["bob"].path.kind, (PUBLIC, PEER_REFLEXIVE))
        self.assertIn(world.bob.contacts["alice"].path.kind, (PUBLIC, PEER_REFLEXIVE))
        offRelay = [name for name, previous, _ in moved if previous == RELAYED]
        self.assertEqual(sorted(offRelay), ["alice", "bob"])
        self.assertNotIn(RELAYED, [kind for _, _, kind in moved])
        self.assertEqual(
            len([e for e in events if "moved off the TURN relay" in e["log_format"]]), 2
        )
        count = len(moved)
        world.network.advance(30)
        self.assertIn(world.alice.contacts["bob"].path.kind, (PUBLIC, PEER_REFLEXIVE))
        self.assertEqual(len(moved), count)


class RelayAtOnceTests(SynchronousTestCase):
    def test_verdictsRuleDirectOut(self):
        """
        When both peers know their NATs are symmetric before the
        introduction, each tells the other with its relayed address, and
        the relay is tried at once: both paths are up relayed well within
        the second that direct candidates are otherwise given, and the log
        says why.
        """
        from punchd.natprobe import ADDRESS_AND_PORT_DEPENDENT, NATBehaviour

        world = RelayWorld(symmetric(), symmetric(), latency=0.01, discoverNAT=False)
        events = EventLoggingObserver.createWithCleanup(self, PeerProtocol.log.observer)
        world.startPeer("alice", "bob", 5000)
        world.network.advance(1)
        world.startPeer("bob", "alice", 6000)
        for peer, public in ((world.alice, "198.51.100.1"), (world.bob, "203.0.113.1")):
            peer.natBehaviour = NATBehaviour(
                5000, (public, 5000), True, ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, False
            )
        world.network.advance(4)
        introduced = RelayPeerTests.introducedAt(None, world)
        for peer, other in ((world.alice, "bob"), (world.bob, "alice")):
            [up] = world.when(peer.name, "pathUp")
            self.assertLess(up - introduced, 1.0)
            self.assertEqual(peer.contacts[other].path.kind, RELAYED)
        whys = [e["why"] for e in events if "relayed via TURN server" in e["log_format"]]
        self.assertEqual(
            whys, ["a direct path is impossible between a symmetric NAT and a symmetric NAT"] * 2
        )


class RelayRebindingTests(SynchronousTestCase):
    def test_movesToDirectWhenANATRestartsAsACone(self):
        """
        Relayed between two symmetric NATs, the path moves to direct when
        bob's NAT restarts as a full cone, forgetting every mapping: bob's
        datagrams come through alice's relay from his new public port,
        which alice then probes directly.  One pathMoved off the relay on
        each side, and none back.
        """
        from punchd.natprobe import ENDPOINT_INDEPENDENT

        world = RelayWorld(symmetric(), symmetric())
        world.start()
        moved = recordMoves(world)
        world.network.advance(2.5)
        self.assertEqual(world.alice.contacts["bob"].path.kind, RELAYED)
        world.natB.mapping = world.natB.filtering = ENDPOINT_INDEPENDENT
        world.natB.clearMappings()
        world.network.advance(2)
        self.assertIn(world.alice.contacts["bob"].path.kind, (PUBLIC, PEER_REFLEXIVE))
        self.assertIn(world.bob.contacts["alice"].path.kind, (PUBLIC, PEER_REFLEXIVE))
        self.assertEqual(sorted(name for name, previous, _ in moved if previous == RELAYED), ["alice", "bob"])
        self.assertNotIn(RELAYED, [kind for _, _, kind in moved])

    def test_relayedPathFollowsARebinding(self):
        """
        Relayed between two symmetric NATs, when bob's NAT restarts, still
        symmetric, his allocation on the TURN server points at a port his
        NAT no longer has; alice, hearing him through her relay from a new
        port, probes it and sends there: bob gets alice's messages again
        within two seconds, and the path is still relayed.
        """
        world = RelayWorld(symmetric(), symmetric())
        world.start()
        world.network.advance(2.5)
        bobGreeter = world.bob.contacts["alice"].application
        world.natB.clearMappings()
        world.network.advance(2)
        before = len(bobGreeter.received)
        world.network.advance(2)
        self.assertGreaterEqual(len(bobGreeter.received) - before, 2)
        self.assertEqual(world.alice.contacts["bob"].path.kind, RELAYED)
        self.assertEqual(world.bob.contacts["alice"].path.kind, RELAYED)
