"""
Every pairing of {original test-server, punch-server --seed-compat} with
{original test-client, punch-peer}, in both roles, over simulated
port-restricted cone NATs: the original programs are played by
L{punchd.test.seedfake}, with their own timing.

Against an original test-server a punch-peer runs with C{--seed-compat};
against a punch-server it runs natively, or with C{--seed-compat} too.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.compat.client import SeedPeerProtocol
from punchd.compat.peer import OriginalPeers
from punchd.compat.server import OriginalClients
from punchd.server import StageManagerProtocol
from punchd.test.seedfake import FakeTestClient, FakeTestServer
from punchd.testing import Network, portRestrictedCone

SERVER = ("192.0.2.10", 8080)

#: Seconds between the first peer's start and the second's.
GAP = 5.0


def message(sender, receiver):
    return f"This is a direct P2P message from {sender} to {receiver}"


class Pairing:
    """
    A server of one kind, and alice and bob, each behind a port-restricted
    cone NAT, each a client of one kind; alice starts first.
    """

    def __init__(self, serverKind, aliceKind, bobKind):
        self.network = Network(latency=0.02)
        self.clock = self.network.clock
        serverHost = self.network.host(SERVER[0])
        if serverKind == "original":
            self.server = FakeTestServer()
        else:
            phonebook = Phonebook(100, 60)
            self.server = StageManagerProtocol(
                serverHost, phonebook, dialects=(OriginalClients(serverHost),)
            )
        serverHost.listenUDP(SERVER[1], self.server)
        self.kinds = {"alice": aliceKind, "bob": bobKind}
        self.hosts = {}
        for name, public, private in (
            ("alice", "198.51.100.1", "10.0.1.2"),
            ("bob", "203.0.113.1", "10.0.2.2"),
        ):
            nat = self.network.nat(public, **portRestrictedCone())
            self.hosts[name] = self.network.host(private, behind=nat)
        self.peers = {}

    def start(self, name, contact, port):
        kind = self.kinds[name]
        host = self.hosts[name]
        if kind == "original":
            peer = FakeTestClient(host, SERVER, name, contact)
        elif kind == "seed":
            peer = SeedPeerProtocol(host, SERVER, name, contact)
        else:
            peer = PeerProtocol(
                host,
                SERVER,
                name,
                contact,
                localHosts=(host.address,),
                dialects=(OriginalPeers(message(name, contact)),),
            )
        host.listenUDP(port, peer)
        self.peers[name] = peer

    def run(self, seconds):
        """
        Start alice, then bob L{GAP} seconds later, and run until both have
        heard the other or C{seconds} have passed since bob's start.

        @return: For each of them, the seconds from bob's start to the first
            direct message it heard, or L{None}.
        """
        self.start("alice", "bob", 5000)
        self.network.advance(GAP)
        start = self.clock.seconds()
        self.start("bob", "alice", 6000)
        heard = {}
        while self.clock.seconds() - start < seconds and len(heard) < 2:
            self.network.advance(0.25)
            for name, other in (("alice", "bob"), ("bob", "alice")):
                said = message(other, name)
                if name not in heard and any(t == said for t, _ in received(self.peers[name])):
                    heard[name] = self.clock.seconds() - start
        return {name: heard.get(name) for name in ("alice", "bob")}


def received(peer):
    """
    The direct messages a peer of any kind received, as C{(text, source)}.
    """
    if isinstance(peer, FakeTestClient):
        return peer.received
    return peer.application.received


class PairingTestsMixin:
    serverKind = None
    #: Seconds after bob's start by which both must have heard the other.
    within = None

    def assertConnects(self, aliceKind, bobKind):
        pairing = Pairing(self.serverKind, aliceKind, bobKind)
        heard = pairing.run(self.within + 5)
        for name, after in heard.items():
            self.assertIsNotNone(
                after, f"{name} ({pairing.kinds[name]}) heard nothing: {heard}"
            )
            self.assertLessEqual(after, self.within, f"{name}: {heard}")
        for name, peer in pairing.peers.items():
            if isinstance(peer, FakeTestClient):
                other = "bob" if name == "alice" else "alice"
                self.assertIn(f"\n{message(other, name)}\n", peer.transcript)
        return heard


class PunchServerPairingTests(PairingTestsMixin, SynchronousTestCase):
    """
    Every pairing through C{punch-server --seed-compat}.  Native peers and
    punch-peer --seed-compat connect within about a second and a half of
    the second peer's start; an original test-client, which cannot echo a
    cookie, counts as proven only at its second registration from the same
    address, some 30 s after its first (the original registers every 30
    receive attempts), and is shown to nobody, nor introduced, before:
    pairings with one connect about 31 s after the second peer's start.
    """

    serverKind = "punchd"
    within = 32

    def test_spoofedOriginalNotIntroduced(self):
        """
        A text registration of the name a native peer seeks, spoofed once
        from a victim's address, gets the victim nothing, and the native
        peer is neither introduced to the victim nor sends it anything.
        """
        pairing = Pairing(self.serverKind, "native", "original")
        pairing.start("alice", "bob", 5000)
        pairing.network.advance(5)
        victim = pairing.network.host("192.0.2.99")
        victim.listenUDP(4000, FakeTestServer()).write(b"bob", SERVER)
        pairing.network.advance(30)
        alice = pairing.peers["alice"]
        self.assertEqual(
            [d for d in pairing.network.traffic if d.destination[0] == "192.0.2.99"], []
        )
        self.assertEqual(list(alice.application.received), [])

    def test_originalAndOriginal(self):
        """
        Two original test-clients connect about a second after the second
        one's proof, its second registration, and not before it.
        """
        heard = self.assertConnects("original", "original")
        self.assertGreaterEqual(min(heard.values()), 25)

    def test_originalThenNative(self):
        """
        An original test-client, then a native punch-peer, connect.
        """
        self.assertConnects("original", "native")

    def test_nativeThenOriginal(self):
        """
        A native punch-peer, then an original test-client, connect.
        """
        self.assertConnects("native", "original")

    def test_nativeAndNative(self):
        """
        Two native punch-peers still connect natively.
        """
        self.assertConnects("native", "native")

    def test_originalThenSeed(self):
        """
        An original test-client, then a punch-peer --seed-compat, connect.
        """
        self.assertConnects("original", "seed")

    def test_seedThenOriginal(self):
        """
        A punch-peer --seed-compat, then an original test-client, connect.
        """
        self.assertConnects("seed", "original")

    def test_seedThenNative(self):
        """
        A punch-peer --seed-compat, then a native punch-peer, connect.
        """
        self.assertConnects("seed", "native")

    def test_nativeThenSeed(self):
        """
        A native punch-peer, then a punch-peer --seed-compat, connect.
        """
        self.assertConnects("native", "seed")


class OriginalServerPairingTests(PairingTestsMixin, SynchronousTestCase):
    """
    Every pairing through the original C{test-server}: an original client
    that registered first learns of the second peer only at its next
    registration, up to 30 s later.
    """

    serverKind = "original"
    within = 31.0

    def test_originalAndOriginal(self):
        """
        Two original test-clients connect, as the originals always did.
        """
        self.assertConnects("original", "original")

    def test_originalThenSeed(self):
        """
        An original test-client, then a punch-peer --seed-compat, connect.
        """
        self.assertConnects("original", "seed")

    def test_seedThenOriginal(self):
        """
        A punch-peer --seed-compat, then an original test-client, connect
        sooner: the punch-peer looks again after 1, 2, 4... seconds.
        """
        heard = self.assertConnects("seed", "original")
        self.assertLess(max(heard.values()), 5)

    def test_seedAndSeed(self):
        """
        Two punch-peers --seed-compat connect through the original server
        within seconds.
        """
        heard = self.assertConnects("seed", "seed")
        self.assertLess(max(heard.values()), 5)
