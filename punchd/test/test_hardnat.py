"""
Many-port punches (L{punchd.hardnat}): the pure parts, and a symmetric NAT
against a port-restricted cone one on L{punchd.testing}'s simulated network,
with a TURN relay as the fallback and without one.
"""

import random

from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from punchd import hardnat, messages, stun
from punchd.natprobe import ADDRESS_AND_PORT_DEPENDENT as APD
from punchd.natprobe import ENDPOINT_INDEPENDENT as EI
from punchd.natprobe import NATBehaviour
from punchd.peer import PeerProtocol
from punchd.punching import PEER_REFLEXIVE, RELAYED, UP, Punch
from punchd.test.helpers import SERVER, World
from punchd.test.test_relaypeer import TURN, RelayWorld
from punchd.testing import SEQUENTIAL, portRestrictedCone, symmetric

SYMMETRIC = (APD, APD)
PORT_RESTRICTED = (EI, APD)


class RoleTests(SynchronousTestCase):
    def test_hard(self):
        """
        A NAT that maps per destination against one that does not plays hard.
        """
        self.assertEqual(hardnat.role(SYMMETRIC, PORT_RESTRICTED), hardnat.HARD)

    def test_easy(self):
        """
        A NAT that keeps one mapping against one that does not plays easy.
        """
        self.assertEqual(hardnat.role(PORT_RESTRICTED, SYMMETRIC), hardnat.EASY)

    def test_easyLetsInAnyPort(self):
        """
        Against a NAT that keeps one mapping and lets in any port of an
        address it sent to, neither side probes many ports.
        """
        for filtering in (EI, "address-dependent"):
            self.assertIsNone(hardnat.role(SYMMETRIC, (EI, filtering)))
            self.assertIsNone(hardnat.role((EI, filtering), SYMMETRIC))

    def test_alike(self):
        """
        Two NATs that map alike, or one not known, give no role.
        """
        self.assertIsNone(hardnat.role(SYMMETRIC, SYMMETRIC))
        self.assertIsNone(hardnat.role(PORT_RESTRICTED, PORT_RESTRICTED))
        self.assertIsNone(hardnat.role(None, SYMMETRIC))
        self.assertIsNone(hardnat.role(PORT_RESTRICTED, None))


class PortsToProbeTests(SynchronousTestCase):
    def test_predictedFirst(self):
        """
        The ports after the one seen come first, in order.
        """
        ports = hardnat.portsToProbe(40000, 1024, random.Random(1))
        self.assertEqual(ports[: hardnat.PREDICTED], list(range(40001, 40001 + hardnat.PREDICTED)))

    def test_distinct(self):
        """
        As many distinct ports as asked for, in the NAT's range, none the one seen.
        """
        ports = hardnat.portsToProbe(65500, 2048, random.Random(1))
        self.assertEqual(len(set(ports)), 2048)
        self.assertNotIn(65500, ports)
        self.assertTrue(all(1024 <= p < 65536 for p in ports))


def hardWorld(natA, natB, seed=0, **kwargs):
    """
    alice behind C{natA} (symmetric), bob behind C{natB} (port-restricted
    cone), both knowing their NATs, the stage manager offering a relay.
    """
    world = RelayWorld(natA, natB, latency=0.01, discoverNAT=False, seed=seed, **kwargs)
    world.startPeer("alice", "bob", 5000)
    world.network.advance(1)
    world.startPeer("bob", "alice", 6000)
    world.alice.natBehaviour = NATBehaviour(5000, ("198.51.100.1", 5000), True, *SYMMETRIC, False)
    world.bob.natBehaviour = NATBehaviour(6000, ("203.0.113.1", 6000), True, *PORT_RESTRICTED, False)
    return world


def portsUnseen(world):
    """
    Make both peers of C{world} take no verdict from the ports they see.
    """
    for peer in (world.alice, world.bob):
        peer._portsSeen = lambda *args: None


class HardNATTests(SynchronousTestCase):
    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, PeerProtocol.log.observer)

    def sentBy(self, world, host):
        return [d for d in world.network.traffic if d.sender is host]

    def test_connectsDirectly(self):
        """
        A symmetric NAT against a port-restricted cone one: both paths end
        up direct, over one of alice's extra sockets.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        world.network.advance(10)
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((alice.kind, bob.kind), (PEER_REFLEXIVE, PEER_REFLEXIVE))
        self.assertIsInstance(alice.selected.address, hardnat.SideSource)
        self.assertEqual(bob.selected.address[0], "198.51.100.1")

    def test_sequentialPredicted(self):
        """
        Against a symmetric NAT that allocates in sequence, the first
        predicted ports meet alice's sockets: the probes of a round trip do.
        """
        world = hardWorld(symmetric(allocation=SEQUENTIAL), portRestrictedCone())
        world.network.advance(10)
        bob = world.bob.contacts["alice"].path
        self.assertEqual(bob.kind, PEER_REFLEXIVE)
        self.assertLess(bob.scanProbesSent, 64)
        seen = bob.introducedAddress[1]
        self.assertLess(bob.selected.address[1] - seen, hardnat.PREDICTED)

    def test_budget(self):
        """
        bob probes at most its budget of ports, alice from at most her
        number of sockets, twice at most each.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        world.network.advance(15)
        self.assertLessEqual(world.bob.contacts["alice"].path.scanProbesSent, hardnat.BUDGET)
        self.assertLessEqual(world.alice.contacts["bob"].path.scanProbesSent, hardnat.SOCKETS)

    def test_onlyThatIP(self):
        """
        Nothing either peer sends goes anywhere but to the stage manager,
        the TURN server and the other peer's public IP.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        world.network.advance(15)
        allowed = {SERVER[0], TURN[0]}
        for host, other in ((world.aliceHost, "203.0.113.1"), (world.bobHost, "198.51.100.1")):
            places = {d.destination[0] for d in self.sentBy(world, host)}
            self.assertLessEqual(places, allowed | {other})

    def test_socketsClosed(self):
        """
        Once the path is up, only the socket it runs over stays open.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        world.network.advance(10)
        self.assertEqual(len(world.alice.sideSockets), 1)
        self.assertEqual(world.bob.sideSockets, {})

    def test_noTimersLeft(self):
        """
        Once both peers stop, no delayed call of theirs remains and every
        extra socket is closed.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        # Stopped in the middle of the scan.
        for _ in range(100):
            path = world.bob.contacts["alice"].path
            if path is not None and path.scanning:
                break
            world.network.advance(0.05)
        self.assertTrue(world.bob.contacts["alice"].path.scanning)
        world.alicePort.stopListening()
        world.bobPort.stopListening()
        self.assertEqual(world.alice.sideSockets, {})
        self.assertEqual(world.aliceHost.getDelayedCalls(), [])
        self.assertEqual(world.bobHost.getDelayedCalls(), [])

    def test_relayFallback(self):
        """
        When the many-port punch fails (alice opens no extra socket), the
        path stays up relayed, and bob's probes stop at his budget.
        """
        world = hardWorld(symmetric(), portRestrictedCone(), hardSockets=0)
        world.network.advance(15)
        bob = world.bob.contacts["alice"].path
        self.assertEqual((world.alice.contacts["bob"].path.kind, bob.kind), (RELAYED, RELAYED))
        self.assertFalse(bob.scanning)
        self.assertEqual(bob.scanProbesSent, hardnat.BUDGET)

    def test_logged(self):
        """
        The log says what each side is doing.
        """
        world = hardWorld(symmetric(), portRestrictedCone())
        world.network.advance(10)
        texts = [e["log_format"] for e in self.events]
        self.assertTrue(any("maps per destination: probing {count} ports" in t for t in texts))
        self.assertTrue(any("My NAT maps per destination and" in t for t in texts))

    def test_verdictsAfterTheRelay(self):
        """
        Verdicts found only after the relayed addresses went out (discovery
        is slower than an introduction) still start the many-port punch:
        each peer sends its relayed address again with its verdict, and
        the path moves from the relay to direct.
        """
        world = RelayWorld(symmetric(), portRestrictedCone(), latency=0.01, discoverNAT=False)
        world.start()
        # The verdicts alone, not the ports seen (PortsSeenTests), move it.
        portsUnseen(world)
        world.network.advance(3)
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((alice.kind, bob.kind), (RELAYED, RELAYED))
        world.alice._natFound(NATBehaviour(5000, ("198.51.100.1", 5000), True, *SYMMETRIC, False))
        world.network.advance(0.5)
        world.bob._natFound(NATBehaviour(6000, ("203.0.113.1", 6000), True, *PORT_RESTRICTED, False))
        world.network.advance(10)
        self.assertEqual((alice.kind, bob.kind), (PEER_REFLEXIVE, PEER_REFLEXIVE))
        self.assertEqual(len(world.alice.sideSockets), 1)


def alone(natA, natB, **kwargs):
    """
    alice behind C{natA} and bob behind C{natB}, the stage manager
    offering no relay, the peers not probing their NATs by themselves.
    """
    return World(natA, natB, latency=0.01, discoverNAT=False, **kwargs)


def found(peer, behaviour):
    """
    Tell C{peer} its NAT probe found C{behaviour}, a C{(mapping,
    filtering)} pair.
    """
    address = peer.publicAddress or ("192.0.2.1", 1)
    peer._natFound(NATBehaviour(address[1], address, True, *behaviour, False))


def candidates(world):
    """
    The C{CANDIDATE} requests the stage manager received and sent.
    """
    return [
        messages.parseCandidate(m)
        for m in (stun.decode(d.data) for d in world.network.delivered() if d.data[:1] < b"\x04")
        if (m.method, m.messageClass) == (messages.CANDIDATE, stun.REQUEST)
    ]


class VerdictsWithoutRelayTests(SynchronousTestCase):
    """
    Without a TURN server, the NAT verdicts reach the contacts, in the
    introductions or after them, and a symmetric NAT connects directly to a
    port-restricted cone one by probing many ports.
    """

    def assertDirectByManyPorts(self, world):
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((alice.state, bob.state), (UP, UP))
        self.assertIsInstance(alice.selected.address, hardnat.SideSource)
        self.assertGreater(bob.scanProbesSent, 0)

    def test_inTheIntroductions(self):
        """
        Verdicts found before the introduction go in the registrations and
        come back in the introductions: no candidate is sent, and the path
        comes up directly over one of alice's extra sockets.
        """
        world = alone(symmetric(), portRestrictedCone())
        world.startPeer("alice", "bob", 5000)
        world.network.advance(1)
        found(world.alice, SYMMETRIC)
        world.network.advance(1)
        self.assertEqual(world.server.phonebook.lookup("alice", world.clock.seconds()).nat, SYMMETRIC)
        world.startPeer("bob", "alice", 6000)
        # bob's first registration introduces him, before his own verdict:
        # his reaches alice through the stage manager when it is found.
        world.network.advance(0.2)
        self.assertEqual(world.bob.contacts["alice"].path.peerNAT, SYMMETRIC)
        found(world.bob, PORT_RESTRICTED)
        world.network.advance(10)
        self.assertDirectByManyPorts(world)
        self.assertEqual(
            [(c.name, c.address, c.nat) for c in candidates(world)],
            [("bob", None, PORT_RESTRICTED)] * 2,
        )

    def test_afterTheIntroduction(self):
        """
        Verdicts found after the introduction go to the contact through the
        stage manager, in candidates without a relayed address.
        """
        world = alone(symmetric(), portRestrictedCone())
        world.start()
        world.network.advance(1)
        self.assertIsNotNone(world.alice.contacts["bob"].path)
        found(world.alice, SYMMETRIC)
        world.network.advance(0.5)
        found(world.bob, PORT_RESTRICTED)
        world.network.advance(10)
        self.assertDirectByManyPorts(world)
        self.assertEqual(
            sorted((c.name, c.address, c.nat) for c in candidates(world)),
            [("alice", None, SYMMETRIC)] * 2 + [("bob", None, PORT_RESTRICTED)] * 2,
        )

    def test_keptThroughRefreshes(self):
        """
        The stage manager keeps a verdict through compact refreshes, which
        do not carry it and are no larger for it.
        """
        world = alone(symmetric(), portRestrictedCone(), interval=5.0)
        world.startPeer("alice", "bob", 5000)
        world.network.advance(1)
        found(world.alice, SYMMETRIC)
        world.network.advance(1)
        # Not seeking now, so that alice refreshes in the compact form.
        world.alice.contacts["bob"].path = object.__new__(Punch)
        world.alice.contacts["bob"].path.state = UP
        world.network.advance(30)
        refreshes = [d for d in world.network.delivered() if d.data[:2] == messages.REFRESH_HEAD[:2]]
        self.assertGreater(len(refreshes), 2)
        self.assertEqual({len(d.data) for d in refreshes}, {messages.REFRESH_BYTES})
        self.assertEqual(world.server.phonebook.lookup("alice", world.clock.seconds()).nat, SYMMETRIC)
        world.alice.contacts["bob"].path = None


class PortsSeenTests(SynchronousTestCase):
    """
    Without NAT probes, the ports the peers see for each other and for
    themselves say how their NATs map.
    """

    def setUp(self):
        self.events = EventLoggingObserver.createWithCleanup(self, PeerProtocol.log.observer)

    def test_relayedThenManyPorts(self):
        """
        A symmetric NAT against a port-restricted cone one, neither peer
        probing its NAT: through the relay each sees that alice's NAT gives
        a new port per destination and bob's does not, and the path moves
        to direct by many ports.
        """
        world = RelayWorld(symmetric(), portRestrictedCone(), latency=0.01, discoverNAT=False)
        world.start()
        world.network.advance(15)
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((world.alice.natBehaviour, world.bob.natBehaviour), (None, None))
        self.assertEqual((alice.peerNAT, world.alice._natSeen), (PORT_RESTRICTED, SYMMETRIC))
        self.assertEqual((bob.peerNAT, world.bob._natSeen), (SYMMETRIC, PORT_RESTRICTED))
        self.assertEqual((alice.kind, bob.kind), (PEER_REFLEXIVE, PEER_REFLEXIVE))
        self.assertIsInstance(alice.selected.address, hardnat.SideSource)
        texts = [e["log_format"] for e in self.events]
        self.assertIn("{peer} came from port {port}, the stage manager saw {introduced}: its NAT {how}", texts)

    def test_withoutItRelayed(self):
        """
        The same two NATs, when the ports seen say nothing (no verdict is
        taken from them), stay relayed: what moves the path is the ports.
        """
        world = RelayWorld(symmetric(), portRestrictedCone(), latency=0.01, discoverNAT=False)
        world.start()
        portsUnseen(world)
        world.network.advance(15)
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((alice.kind, bob.kind), (RELAYED, RELAYED))

    def test_fromTheSamePortNothingNew(self):
        """
        Behind two port-restricted cone NATs, the ports seen say both keep
        one mapping: no many-port punch, the path direct between the public
        addresses.
        """
        world = alone(portRestrictedCone(), portRestrictedCone())
        world.start()
        world.network.advance(5)
        alice, bob = world.alice.contacts["bob"].path, world.bob.contacts["alice"].path
        self.assertEqual((alice.peerNAT, bob.peerNAT), (PORT_RESTRICTED, PORT_RESTRICTED))
        self.assertEqual(world.alice._natSeen, PORT_RESTRICTED)
        self.assertEqual((alice.scanProbesSent, bob.scanProbesSent), (0, 0))
        self.assertEqual(world.alice.sideSockets, {})
