"""
A peer with several contacts: one socket, one registration naming them
all, a path to each, and introductions that do not cancel each other.
"""

from random import Random

from twisted.trial.unittest import SynchronousTestCase

from punchd import frames, messages, stun
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.punching import UP
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER, Quiet, Recorder, register
from punchd.testing import Network, portRestrictedCone


class Sites:
    """
    A stage manager and peers, each behind a port-restricted cone NAT of
    its own.
    """

    def __init__(self):
        self.network = Network(latency=0.05)
        self.clock = self.network.clock
        serverHost = self.network.host(SERVER[0])
        self.server = StageManagerProtocol(serverHost, Phonebook(100, 60))
        serverHost.listenUDP(SERVER[1], self.server)
        self._sites = 0

    def peer(self, name, wants, **kwargs):
        self._sites += 1
        nat = self.network.nat(f"198.51.100.{self._sites}", **portRestrictedCone())
        host = self.network.host(f"10.0.{self._sites}.2", behind=nat)
        peer = PeerProtocol(host, SERVER, name, wants, localHosts=(host.address,), **kwargs)
        host.listenUDP(5000, peer)
        return peer


class SeveralContactsTests(SynchronousTestCase):
    """
    L{PeerProtocol} with several contacts.
    """

    def test_pathToEach(self):
        """
        alice, wanting bob and carol, comes up with both from one socket;
        each contact's messages reach that contact's application only.
        """
        sites = Sites()
        alice = sites.peer("alice", ("bob", "carol"))
        bob = sites.peer("bob", "alice")
        carol = sites.peer("carol", "alice")
        sites.network.advance(3)
        self.assertEqual(
            {name: contact.path.state for name, contact in alice.contacts.items()},
            {"bob": UP, "carol": UP},
        )
        self.assertEqual((bob.punch.state, carol.punch.state), (UP, UP))
        self.assertEqual(sites.server.stats["introductions"], 2)
        received = {n: [t for t, _ in c.application.received] for n, c in alice.contacts.items()}
        self.assertIn("This is a direct P2P message from bob to alice", received["bob"])
        self.assertIn("This is a direct P2P message from carol to alice", received["carol"])
        self.assertNotIn("This is a direct P2P message from carol to alice", received["bob"])
        self.assertIn(
            "This is a direct P2P message from alice to carol",
            [t for t, _ in carol.application.received],
        )

    def test_introductionsDoNotCancel(self):
        """
        An introduction to carol, arriving while alice punches to bob,
        leaves the path to bob alone; and a contact whose path is up is no
        longer sought, while one still missing is.
        """
        sites = Sites()
        alice = sites.peer("alice", ("bob", "carol"))
        bob = sites.peer("bob", "alice")
        sites.network.advance(2)
        pathToBob = alice.pathTo("bob")
        self.assertEqual(pathToBob.state, UP)
        self.assertEqual(alice.seeking, ("carol",))
        sites.peer("carol", "alice")
        sites.network.advance(2)
        self.assertIs(alice.pathTo("bob"), pathToBob)
        self.assertEqual((pathToBob.state, alice.pathTo("carol").state), (UP, UP))
        self.assertEqual(alice.seeking, ())
        self.assertEqual(bob.punch.state, UP)

    def test_oneMACPerDatagram(self):
        """
        A datagram from a contact is matched to its path by the names it
        carries: only that path's key is tried.
        """
        sites = Sites()
        alice = sites.peer("alice", ("bob", "carol", "dave"))
        sites.peer("bob", "alice")
        sites.peer("carol", "alice")
        sites.peer("dave", "alice")
        sites.network.advance(3)
        checked = []
        inAlice = []
        verify = stun.verifyIntegrity

        def counting(datagram, key):
            if inAlice:
                checked.append(key)
            return verify(datagram, key)

        fromContacts = []
        receive = alice.datagramReceived

        def received(datagram, address):
            if address != SERVER and not frames.isFrame(datagram):
                fromContacts.append(datagram)
            inAlice.append(True)
            try:
                receive(datagram, address)
            finally:
                inAlice.pop()

        self.patch(stun, "verifyIntegrity", counting)
        alice.datagramReceived = received
        sites.network.advance(10)
        # Keepalives and their answers from three contacts, each checked
        # once: with three keys tried in turn it would be about twice as
        # many.  (Frames are found by their receiver index.)
        self.assertGreaterEqual(len(fromContacts), 12)
        self.assertEqual(len(checked), len(fromContacts))

    def test_applicationsByContact(self):
        """
        C{applications} gives each contact its own application; one
        C{application} for several contacts, or one for a name that is not
        a contact, is refused.
        """
        network = Network()
        host = network.host("192.0.2.5")

        quiet = Quiet(network.clock)
        peer = PeerProtocol(host, SERVER, "alice", ("bob", "carol"), applications={"carol": quiet})
        self.assertIs(peer.contacts["carol"].application, quiet)
        self.assertIsNot(peer.contacts["bob"].application, quiet)
        for kwargs in (
            dict(application=quiet),
            dict(applications={"dave": quiet}),
        ):
            self.assertRaises(ValueError, PeerProtocol, host, SERVER, "alice", ("bob", "carol"), **kwargs)
        for wants in ((), ("bob", "bob"), ("alice",), tuple(f"p{i}" for i in range(17))):
            self.assertRaises(ValueError, PeerProtocol, host, SERVER, "alice", wants)


class SeveralWantedTests(SynchronousTestCase):
    """
    The stage manager takes several wanted names in one registration.
    """

    def setUp(self):
        self.network = Network(latency=0.01)
        serverHost = self.network.host(SERVER[0])
        self.server = StageManagerProtocol(serverHost, Phonebook(100, 60))
        serverHost.listenUDP(SERVER[1], self.server)

    def client(self, address):
        recorder = Recorder()
        transport = self.network.host(address).listenUDP(5000, recorder)
        return recorder, transport

    def test_stateOfEachSought(self):
        """
        The answer says where each contact sought stands, in order, and the
        registrant is introduced to each that wants it.
        """
        _, bobTransport = self.client("203.0.113.2")
        _, carolTransport = self.client("203.0.113.3")
        alice, aliceTransport = self.client("203.0.113.1")
        register(self.server, bobTransport, "bob", "alice")
        register(self.server, carolTransport, "carol", "dave")
        self.network.advance(1)
        register(
            self.server, aliceTransport, "alice", ("bob", "carol", "erin"), ("bob", "carol", "erin")
        )
        self.network.advance(1)
        [answer] = alice.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(
            messages.parseRegistered(answer).peerStates,
            (messages.PEER_INTRODUCED, messages.PEER_WAITING, messages.PEER_WAITING),
        )
        introduced = {
            messages.parseIntroduction(m).name
            for m in alice.messages(messages.INTRODUCE, stun.REQUEST)
        }
        self.assertEqual(introduced, {"bob"})

    def test_onlySought(self):
        """
        Contacts not sought are not looked up or introduced, and the
        answer has a state for those sought only.
        """
        _, bobTransport = self.client("203.0.113.2")
        _, carolTransport = self.client("203.0.113.3")
        alice, aliceTransport = self.client("203.0.113.1")
        register(self.server, bobTransport, "bob", "alice")
        register(self.server, carolTransport, "carol", "alice")
        self.network.advance(1)
        register(self.server, aliceTransport, "alice", ("bob", "carol"), ("carol",))
        self.network.advance(1)
        [answer] = alice.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_INTRODUCED,))
        introduced = {
            messages.parseIntroduction(m).name
            for m in alice.messages(messages.INTRODUCE, stun.REQUEST)
        }
        self.assertEqual(introduced, {"carol"})


class SeveralStageManagersTests(SynchronousTestCase):
    """
    A peer given several stage managers moves to the next when the one it
    registers with stops answering.
    """

    def test_connectAfterOneDies(self):
        """
        alice and bob know stage managers A and B; A dies before bob
        starts.  Each moves to B within one registration interval and 3.5
        s of retries, and they connect there.
        """
        network = Network(latency=0.01)
        servers = {}
        for address in ("192.0.2.10", "192.0.2.11"):
            host = network.host(address)
            server = StageManagerProtocol(host, Phonebook(100, 60))
            servers[address] = (server, host.listenUDP(8080, server))
        first, second = ("192.0.2.10", 8080), ("192.0.2.11", 8080)
        peers = {}
        for index, (name, wants) in enumerate((("alice", "bob"), ("bob", "alice"))):
            nat = network.nat(f"198.51.100.{index + 1}", **portRestrictedCone())
            host = network.host(f"10.0.{index + 1}.2", behind=nat)
            # Jitter of its own, seeded: with the system's, bob's refresh at B
            # now and then fell between alice's registration there and the
            # path coming up, and B rightly introduced them a second time.
            peers[name] = (
                host,
                PeerProtocol(
                    host, first, name, wants, fallbacks=(second,), random=Random(index)
                ),
            )
        host, alice = peers["alice"]
        host.listenUDP(5000, alice)
        network.advance(1)
        self.assertEqual(alice.registrar.publicAddress[0], "198.51.100.1")
        diedAt = network.clock.seconds()
        servers["192.0.2.10"][1].stopListening()
        host, bob = peers["bob"]
        host.listenUDP(5000, bob)
        # At most an interval (and its jitter) until alice's next
        # registration, 3.5 s of tries, and the round trips to connect.
        limit = diedAt + alice.interval * 1.1 + 3.5 + 1
        while network.clock.seconds() < limit and not all(
            p.punch is not None and p.punch.state == UP for p in (alice, bob)
        ):
            network.advance(0.1)
        self.assertEqual((alice.server, bob.server), (second, second))
        self.assertEqual((alice.punch.state, bob.punch.state), (UP, UP))
        self.assertEqual(servers["192.0.2.11"][0].stats["introductions"], 1)
