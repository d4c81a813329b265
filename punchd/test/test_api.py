"""
Tests for L{punchd.api} and L{punchd.transport}: an application's own
L{DatagramProtocol} on a path, over L{punchd.testing}'s simulated NATs.
"""

import importlib.util
from pathlib import Path

from twisted.application.service import MultiService
from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import api
from punchd.interfaces import IPath, IPathObserver, IPathReceiver
from punchd.phonebook import Phonebook
from punchd.punching import UP
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER
from punchd.testing import SEQUENTIAL, Network, portRestrictedCone, restrictedCone
from punchd.transport import NO_PATH, DatagramApplication

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "docs" / "example.py"


class Recorder(DatagramProtocol):
    """
    Records what reaches it.
    """

    def __init__(self):
        self.received = []
        self.started = self.stopped = 0

    def startProtocol(self):
        self.started += 1

    def stopProtocol(self):
        self.stopped += 1

    def datagramReceived(self, data, address):
        self.received.append((data, address))


@implementer(IPathObserver)
class Watcher(Recorder):
    """
    Records what reaches it, and what happens to the paths.
    """

    def __init__(self):
        super().__init__()
        self.events = []

    def pathUp(self, path):
        self.events.append(("up", path.kind, path.rtt))

    def pathMoved(self, path, previous):
        self.events.append(("moved", previous.address, path.selected.address))

    def pathLost(self, path):
        self.events.append(("lost",))

    def punchFailed(self, path):
        self.events.append(("failed",))


class Site:
    """
    A stage manager, and alice and bob each behind a NAT.
    """

    def __init__(self, natA=None, natB=None):
        self.network = Network(latency=0.025)
        self.serverHost = self.network.host(SERVER[0])
        self.server = StageManagerProtocol(self.serverHost, Phonebook(100, 60))
        self.serverHost.listenUDP(SERVER[1], self.server)
        self.natA = self.network.nat("198.51.100.1", **(natA or portRestrictedCone()))
        self.natB = self.network.nat("203.0.113.1", **(natB or portRestrictedCone()))
        self.alice = self.network.host("10.0.1.2", behind=self.natA)
        self.bob = self.network.host("10.0.2.2", behind=self.natB)

    def options(self, host, port):
        return dict(port=port, localHosts=(host.address,), discoverNAT=False)

    def connect(self, name, protocol):
        host, other, port = (
            (self.alice, "bob", 5000) if name == "alice" else (self.bob, "alice", 6000)
        )
        return api.connect(host, SERVER, name, other, protocol, **self.options(host, port))

    def connectBoth(self, alice, bob):
        """
        Connect both, and run until their Deferreds have fired.

        @return: The two paths.
        """
        results = {}
        for name, protocol in (("alice", alice), ("bob", bob)):
            self.connect(name, protocol).addCallback(lambda path, name=name: results.setdefault(name, path))
        self.network.advance(2)
        return [results.get("alice"), results.get("bob")]


class ConnectTests(SynchronousTestCase):
    """
    L{api.connect}.
    """

    def setUp(self):
        self.site = Site()
        self.alice, self.bob = Watcher(), Recorder()
        self.paths = self.site.connectBoth(self.alice, self.bob)

    def test_firesWithPath(self):
        """
        The Deferred fires with the path once it is up, an L{IPath}.
        """
        for path in self.paths:
            verifyObject(IPath, path)
            self.assertEqual(path.state, UP)

    def test_protocolConnected(self):
        """
        When the path comes up the protocol is connected, once, to a
        transport that is an L{IUDPTransport} answering getHost() with the
        peer's own port and getPeer() with the contact's address.
        """
        for protocol, path, host, port in (
            (self.alice, self.paths[0], self.site.alice, 5000),
            (self.bob, self.paths[1], self.site.bob, 6000),
        ):
            self.assertEqual(protocol.started, 1)
            verifyObject(IUDPTransport, protocol.transport)
            self.assertEqual(protocol.transport.getHost(), IPv4Address("UDP", host.address, port))
            self.assertEqual(protocol.transport.getPeer(), path.getPeer())

    def test_datagramsBothWays(self):
        """
        What one protocol writes reaches the other's datagramReceived,
        bytes as they are, with the address they came from.
        """
        self.alice.transport.write(b"\x00hello\xff")
        self.bob.transport.write(b"x" * api.MAX_PAYLOAD_BYTES)
        self.site.network.advance(1)
        self.assertEqual(self.bob.received, [(b"\x00hello\xff", ("198.51.100.1", 5000))])
        self.assertEqual(self.alice.received, [(b"x" * 1452, ("203.0.113.1", 6000))])

    def test_tooLarge(self):
        """
        A write larger than the maximum raises L{ValueError} naming it.
        """
        e = self.assertRaises(ValueError, self.alice.transport.write, b"x" * 1453)
        self.assertIn("at most 1452 bytes", str(e))

    def test_observerTold(self):
        """
        A protocol that provides L{IPathObserver} is told the path is up,
        with its kind and round trip.
        """
        [(event, kind, rtt)] = self.alice.events
        self.assertEqual((event, kind), ("up", "public"))
        self.assertAlmostEqual(rtt, 0.2)

    def test_connectRefused(self):
        """
        The transport is connected to the contact already and has no
        broadcast.
        """
        transport = self.alice.transport
        self.assertRaises(RuntimeError, transport.connect, "192.0.2.1", 1)
        self.assertRaises(RuntimeError, transport.setBroadcastAllowed, True)
        self.assertFalse(transport.getBroadcastAllowed())

    def test_lostAndBack(self):
        """
        When the path is lost the protocol is told, stays connected, and
        what it writes meanwhile is dropped and counted; the next path is
        its path too.
        """
        self.site.natB.loss = 1.0
        self.site.network.advance(25)
        self.assertIn(("lost",), self.alice.events)
        self.alice.transport.write(b"into the void")
        application = self.alice.transport._application
        self.assertEqual(application.drops.counts[NO_PATH], 1)
        self.site.natB.loss = 0.0
        self.site.network.advance(25)
        self.assertEqual(self.alice.events[-1][0], "up")
        self.alice.transport.write(b"back")
        self.site.network.advance(1)
        self.assertEqual(self.bob.received[-1][0], b"back")
        self.assertEqual((self.alice.started, self.bob.started), (1, 1))

    def test_stopListening(self):
        """
        stopListening() stops the peer: the stage manager forgets it, the
        protocol is stopped, and no timer is left.
        """
        d = self.alice.transport.stopListening()
        self.assertIsNotNone(d)
        self.site.network.advance(1)
        self.assertEqual(self.alice.stopped, 1)
        self.assertEqual(self.site.alice.getDelayedCalls(), [])
        self.assertIsNone(self.site.server.phonebook.lookup("alice", self.site.network.clock.seconds()))


class FactoryTests(SynchronousTestCase):
    """
    A factory of protocols instead of a protocol.
    """

    def test_calledWithContact(self):
        """
        A callable is called with the contact's name when the first path
        comes up, and the protocol it returns is connected.
        """
        site = Site()
        made = []

        def factory(name):
            made.append(name)
            return Recorder()

        [path, _] = site.connectBoth(factory, Recorder())
        self.assertEqual(made, ["bob"])
        self.assertEqual(path.state, UP)


class CancelTests(SynchronousTestCase):
    """
    Cancelling the Deferred of L{api.connect}.
    """

    def test_cancelStops(self):
        """
        Cancelled before a path comes up, the Deferred fails with
        L{defer.CancelledError}, the peer's port is closed and no timer is
        left.
        """
        site = Site()
        d = site.connect("alice", Recorder())
        site.network.advance(1)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(site.alice.getDelayedCalls(), [])
        site.network.advance(1)
        self.assertIsNone(site.server.phonebook.lookup("alice", site.network.clock.seconds()))


class ServiceTests(SynchronousTestCase):
    """
    L{api.PathService} in an application's service tree.
    """

    def test_service(self):
        """
        Started with its parent, it tells whenPathUp() of the path; stopped,
        it fails a whenPathUp() that waits.
        """
        site = Site()
        parent = MultiService()
        service = api.PathService(
            SERVER, "alice", "bob", Recorder(), reactor=site.alice, **site.options(site.alice, 5000)
        )
        service.setServiceParent(parent)
        parent.startService()
        site.connect("bob", Recorder())
        d = service.whenPathUp()
        site.network.advance(2)
        path = self.successResultOf(d)
        self.assertEqual(path.state, UP)
        self.assertIs(self.successResultOf(service.whenPathUp()), path)
        verifyObject(IPathObserver, service.application)
        verifyObject(IPathReceiver, service.application)
        parent.stopService()
        self.assertEqual(site.alice.getDelayedCalls(), [])

    def test_severalContacts(self):
        """
        With several contacts, each gets a protocol of its own from the
        factory, on a path of its own from the one port; a protocol
        instance for several is refused.
        """
        site = Site()
        carolNAT = site.network.nat("192.0.2.77", **portRestrictedCone())
        carolHost = site.network.host("10.0.3.2", behind=carolNAT)
        made = {}

        def factory(contact):
            made[contact] = Recorder()
            return made[contact]

        service = api.PathService(
            SERVER, "alice", ("bob", "carol"), factory, reactor=site.alice,
            **site.options(site.alice, 5000)
        )
        service.startService()
        site.connect("bob", Recorder())
        carol = Recorder()
        api.connect(carolHost, SERVER, "carol", "alice", carol, **site.options(carolHost, 7000))
        toBob, toCarol = service.whenPathUp("bob"), service.whenPathUp("carol")
        site.network.advance(3)
        paths = [self.successResultOf(d) for d in (toBob, toCarol)]
        self.assertEqual([p.peerName for p in paths], ["bob", "carol"])
        self.assertEqual(sorted(made), ["bob", "carol"])
        made["carol"].transport.write(b"to carol")
        site.network.advance(1)
        self.assertEqual([data for data, _ in carol.received], [b"to carol"])
        self.assertEqual(made["bob"].received, [])
        service.stopService()
        self.assertRaises(
            TypeError, api.PathService, SERVER, "alice", ("bob", "carol"), Recorder(),
            reactor=site.alice,
        )

    def test_stopBeforeUp(self):
        """
        A service stopped before any path came up fails whoever waits.
        """
        site = Site()
        service = api.PathService(
            SERVER, "alice", "bob", Recorder(), reactor=site.alice, **site.options(site.alice, 5000)
        )
        service.startService()
        d = service.whenPathUp()
        service.stopService()
        self.failureResultOf(d, error.ConnectError)


class MovedTests(SynchronousTestCase):
    """
    A path whose contact moves to another port.
    """

    def test_movedOnly(self):
        """
        When bob's NAT gives him a new port, alice's protocol is told only
        that the path moved, and both keep receiving.
        """
        site = Site(restrictedCone(), portRestrictedCone(allocation=SEQUENTIAL))
        alice, bob = Watcher(), Watcher()
        site.connectBoth(alice, bob)
        old = alice.transport.getPeer()
        site.natB.clearMappings()
        bob.transport.write(b"from my new port")
        site.network.advance(1)
        new = site.natB.mappingFor("10.0.2.2", 6000).external
        self.assertEqual([e[0] for e in alice.events], ["up", "moved"])
        self.assertEqual(alice.events[1], ("moved", (old.host, old.port), new))
        self.assertEqual(alice.transport.getPeer(), IPv4Address("UDP", *new))
        self.assertEqual([e[0] for e in bob.events], ["up"])
        alice.transport.write(b"to your new port")
        site.network.advance(1)
        self.assertEqual(bob.received[-1][0], b"to your new port")
        self.assertEqual(alice.received[-1], (b"from my new port", new))


class ApplicationTests(SynchronousTestCase):
    """
    L{DatagramApplication} on its own.
    """

    def test_interfaces(self):
        """
        It is an L{IPathObserver} and L{IPathReceiver}; its transport an
        L{IUDPTransport}.
        """
        application = DatagramApplication(None, Recorder(), "bob")
        verifyObject(IPathObserver, application)
        verifyObject(IPathReceiver, application)
        verifyObject(IUDPTransport, application.transport)


def loadExample():
    """
    docs/example.py, as a module.

    @raise SkipTest: If punchd runs from an installed copy, without the
        source tree the example is in.
    """
    if not EXAMPLE.exists():
        raise SkipTest(f"{EXAMPLE} is in punchd's source tree, not in an installed punchd")
    spec = importlib.util.spec_from_file_location("example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ExampleTests(SynchronousTestCase):
    """
    The runnable example, docs/example.py, on the simulated network.
    """

    def test_pings(self):
        """
        Two peers running the example's main() each get three answers,
        then stop.
        """
        example = loadExample()
        site = Site()
        lines = {"alice": [], "bob": []}
        done = []
        for name, other, host, port in (("alice", "bob", site.alice, 5000), ("bob", "alice", site.bob, 6000)):
            d = defer.ensureDeferred(
                example.main(host, SERVER, name, other, lines[name].append, **site.options(host, port))
            )
            d.addCallback(done.append)
        site.network.advance(10)
        self.assertEqual(len(done), 2)
        self.assertEqual(
            lines["alice"],
            ["Path to bob up: public, round trip 200.0 ms"]
            + [f"bob answered: pong {n}" for n in (1, 2, 3)],
        )
        self.assertEqual(site.alice.getDelayedCalls(), [])
