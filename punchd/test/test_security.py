"""
Tests for punchd on hostile networks: name ownership, address proof and
amplification, rate limits, the shared secret, bounded state, and fuzzing.
"""

import random

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.punching import UP
from punchd.compat.server import OriginalClients
from punchd.metrics import exposition
from punchd.server import StageManagerProtocol, sourceLimiter
from punchd.test.helpers import (
    SERVER,
    Recorder,
    World,
    contacts,
    heldSecret,
    provenRegistration,
    register,
    registration,
)
from punchd.test.optional import given, settings, st
from punchd.testing import Network, portRestrictedCone


def padded(name, wants=None, seeking=False):
    """
    A registration without a cookie, padded as a peer pads its first one.
    """
    wants, seeking = contacts(wants, seeking)
    return messages.encodeRegistration(
        stun.newTransactionID(),
        messages.Registration(name, wants, seeking=seeking),
        messages.UNPROVEN_REGISTRATION_BYTES,
    )


class Site:
    """
    A stage manager on a simulated network, and a way to add clients.
    """

    def __init__(self, seedCompat=False, **serverArgs):
        self.network = Network(latency=0.01)
        self.serverHost = self.network.host(SERVER[0])
        phonebook = Phonebook(100, 60)
        if seedCompat:
            serverArgs["dialects"] = (OriginalClients(self.network.clock),)
        self.server = StageManagerProtocol(self.serverHost, phonebook, **serverArgs)
        self.serverHost.listenUDP(SERVER[1], self.server)
        self.hosts = 0
        self._hosts = {}

    def client(self, address=None, port=5000):
        self.hosts += 1
        address = address or f"203.0.113.{self.hosts}"
        host = self._hosts.get(address)
        if host is None:
            host = self._hosts[address] = self.network.host(address)
        recorder = Recorder()
        return recorder, host.listenUDP(port, recorder)

    def bytesTo(self, address):
        return sum(
            len(d.data) for d in self.network.traffic
            if d.source == SERVER and d.destination == address
        )


class NameOwnershipTests(SynchronousTestCase):
    """
    While a registration lives, nobody else can take its name.
    """

    def setUp(self):
        self.site = Site()
        self.alice, self.aliceTransport = self.site.client("203.0.113.1")
        self.bob, self.bobTransport = self.site.client("203.0.113.2")
        self.mallory, self.malloryTransport = self.site.client("192.0.2.66")
        register(self.site.server, self.aliceTransport, "alice", "bob", True)
        self.site.network.advance(1)

    def takeOver(self, secret=None):
        register(self.site.server, self.malloryTransport, "alice", "mallory", True, secret=secret)
        self.site.network.advance(1)

    def test_takeoverRefused(self):
        """
        A registration of a live name from another address, without its
        secret or with a wrong one, gets a specific error and changes
        nothing.
        """
        for secret in (None, b"\x00" * 16, b"short"):
            self.takeOver(secret)
        entry = self.site.server.phonebook.lookup("alice", self.site.network.clock.seconds())
        self.assertEqual((entry.address, entry.wants), (("203.0.113.1", 5000), ("bob",)))
        errors = self.mallory.messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(len(errors), 3)
        for error in errors:
            code, reason = stun.decodeErrorCode(error.get(stun.ERROR_CODE))
            self.assertEqual(code, messages.NAME_TAKEN)
            self.assertIn("only the holder of its secret", reason)
        self.assertEqual(self.site.server.stats["takeoversRefused"], 3)

    def test_introductionNotRedirected(self):
        """
        After takeover attempts, bob's introduction still names alice's
        real address, and mallory hears of nobody.
        """
        self.takeOver()
        register(self.site.server, self.bobTransport, "bob", "alice", True)
        self.site.network.advance(1)
        introductions = self.bob.messages(messages.INTRODUCE, stun.REQUEST)
        self.assertTrue(introductions)
        for introduction in introductions:
            self.assertEqual(
                messages.parseIntroduction(introduction).address, ("203.0.113.1", 5000)
            )
        self.assertEqual(self.mallory.messages(messages.INTRODUCE, stun.REQUEST), [])

    def test_originalProtocolCannotTakeNativeName(self):
        """
        With the original protocol on, its unauthenticated text cannot take
        a native peer's name either.
        """
        site = Site(seedCompat=True)
        _, alice = site.client("203.0.113.1")
        register(site.server, alice, "alice", "bob", True)
        site.network.advance(1)
        _, mallory = site.client("192.0.2.66")
        mallory.write(b"alice", SERVER)
        site.network.advance(1)
        entry = site.server.phonebook.lookup("alice", site.network.clock.seconds())
        self.assertEqual(entry.address, ("203.0.113.1", 5000))
        self.assertFalse(site.server.dialects[0].speaksFor(entry))
        self.assertEqual(site.server.drops.counts["name held by a native peer"], 1)


class NameSecretTests(SynchronousTestCase):
    """
    The name secret crosses the wire once; later registrations prove that
    they hold it, and it rotates.
    """

    def setUp(self):
        self.site = Site()
        self.alice, self.aliceTransport = self.site.client("203.0.113.1")
        register(self.site.server, self.aliceTransport, "alice", "bob", True)
        self.site.network.advance(1)
        self.first = self.held()

    def held(self):
        return heldSecret(self.alice.messages(messages.REGISTER, stun.SUCCESS))

    def entry(self):
        return self.site.server.phonebook.lookup("alice", self.site.network.clock.seconds())

    def answers(self):
        return [
            messages.parseRegistered(m) for m in self.alice.messages(messages.REGISTER, stun.SUCCESS)
        ]

    def refresh(self, secret, txid=None):
        datagram = provenRegistration(
            self.site.server, self.aliceTransport, "alice", "bob", True, txid=txid, secret=secret
        )
        self.aliceTransport.write(datagram, SERVER)
        self.site.network.advance(1)
        return datagram

    def test_holderAddressWithoutProofRefused(self):
        """
        A registration of the name from its holder's own address, with a
        valid cookie but without the proof, is refused and never gets the
        secret.
        """
        self.refresh(None)
        [error] = self.alice.messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(stun.decodeErrorCode(error.get(stun.ERROR_CODE))[0], messages.NAME_TAKEN)
        self.assertIsNone(error.get(messages.NAME_SECRET))
        self.assertEqual([a.secret for a in self.answers()], [self.first])
        self.assertEqual(self.entry().secret, self.first)

    def test_secretNeverSentAgain(self):
        """
        Refreshes that prove the secret are answered with a nonce, never
        the secret, and the secret moves on to the MAC of the old one over
        the nonce, on both sides; no request carries any secret.
        """
        for _ in range(3):
            self.refresh(self.held())
        answers = self.answers()
        self.assertEqual([a.secret is not None for a in answers], [True, False, False, False])
        self.assertEqual([a.nonce is not None for a in answers], [False, True, True, True])
        secrets = [self.first]
        for answer in answers[1:]:
            secrets.append(messages.nextSecret(secrets[-1], answer.nonce))
        self.assertEqual(len(set(secrets)), 4)
        self.assertEqual((self.entry().secret, self.entry().previousSecret), tuple(secrets[:-3:-1]))
        sent = [d.data for d in self.site.network.traffic if d.destination == SERVER]
        self.assertEqual([d for d in sent for secret in secrets if secret in d], [])

    def test_previousSecretGoodForOneRound(self):
        """
        A registration proven with the secret the last answer replaced (that
        answer was lost) is accepted, and the next secret is made from it;
        once that one is proven, the older secrets are refused.
        """
        self.refresh(self.first)
        lost = self.held()
        self.refresh(self.first)
        self.assertEqual(self.alice.messages(messages.REGISTER, stun.ERROR), [])
        self.assertEqual(self.entry().previousSecret, self.first)
        self.refresh(messages.nextSecret(self.first, self.answers()[-1].nonce))
        self.refresh(lost)
        self.refresh(self.first)
        errors = self.alice.messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(
            [stun.decodeErrorCode(e.get(stun.ERROR_CODE))[0] for e in errors],
            [messages.NAME_TAKEN] * 2,
        )

    def test_retransmissionLeadsToTheSameSecret(self):
        """
        A retransmission of a proven registration, or a late duplicate of
        it, gets the same nonce: the secret it leads to stays good.
        """
        txid = stun.newTransactionID()
        self.refresh(self.first, txid)
        self.refresh(self.first, txid)
        first, second = self.answers()[1:]
        self.assertEqual(first.nonce, second.nonce)
        self.refresh(messages.nextSecret(self.first, first.nonce))
        self.assertEqual(self.alice.messages(messages.REGISTER, stun.ERROR), [])

    def test_firstAnswerLost(self):
        """
        The retransmission of the registration that got the name, from the
        same address with the same transaction, gets the same secret; the
        same registration in another transaction is refused.
        """
        site = Site()
        alice, transport = site.client("203.0.113.1")
        txid = stun.newTransactionID()
        for _ in range(2):
            transport.write(provenRegistration(site.server, transport, "alice", txid=txid), SERVER)
            site.network.advance(1)
        register(site.server, transport, "alice")
        site.network.advance(1)
        [one, two] = [
            messages.parseRegistered(m).secret
            for m in alice.messages(messages.REGISTER, stun.SUCCESS)
        ]
        self.assertEqual(one, two)
        self.assertEqual(len(alice.messages(messages.REGISTER, stun.ERROR)), 1)

    def test_unregisterProvesTheSecret(self):
        """
        An unregistration proven with the current secret frees the name;
        one that carries the secret itself, as a bearer token, does not.
        """
        self.refresh(self.first)
        bearer = stun.encode(
            stun.Message(
                messages.UNREGISTER,
                stun.REQUEST,
                stun.newTransactionID(),
                ((messages.NAME, b"alice"), (messages.NAME_SECRET, self.held())),
            ),
            fingerprint=True,
        )
        self.aliceTransport.write(bearer, SERVER)
        self.site.network.advance(1)
        self.assertIsNotNone(self.entry())
        self.aliceTransport.write(
            messages.encodeUnregister(stun.newTransactionID(), "alice", self.held()), SERVER
        )
        self.site.network.advance(1)
        self.assertIsNone(self.entry())

    def test_peersConnectAfterRotations(self):
        """
        Peers whose secrets rotated at every refresh still take each
        other's introductions, signed with the secret the stage manager
        is sure they hold, and connect.
        """
        world = World(portRestrictedCone(), portRestrictedCone(), interval=2.0)
        world.start(gap=10)
        world.network.advance(5)
        self.assertEqual((world.alice.punch.state, world.bob.punch.state), (UP, UP))
        entry = world.server.phonebook.lookup("alice", world.clock.seconds())
        self.assertEqual(world.alice.registrar.secrets, (entry.secret, entry.previousSecret))
        self.assertEqual(world.alice.drops.counts["unauthenticated introduction"], 0)


class PhonebookFloodTests(SynchronousTestCase):
    """
    Nobody can flood the phonebook into forgetting a live peer, and what
    one source holds is bounded.
    """

    def test_floodDoesNotEvictLivePeers(self):
        """
        While a flood of proven registrations of new names from many
        addresses keeps the phonebook full for a minute, alice and bob, who
        registered before it, keep their entries and their path; the flood's
        names past the phonebook's size are refused with 508 and counted;
        once the flood's entries expire, a new name gets in again.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.serverPort.stopListening()
        world.server = StageManagerProtocol(world.serverHost, Phonebook(50, 60))
        world.serverPort = world.serverHost.listenUDP(SERVER[1], world.server)
        world.start()
        world.network.advance(5)
        flooders = []
        for i in range(60):
            recorder = Recorder()
            transport = world.network.host(f"192.0.2.{i + 100}").listenUDP(7000, recorder)
            flooders.append((recorder, transport))
        for second in range(60):
            for i, (_, transport) in enumerate(flooders):
                register(world.server, transport, f"x{second}-{i}", "alice", True)
            world.network.advance(1)
            now = world.clock.seconds()
            for name in ("alice", "bob"):
                self.assertIsNotNone(world.server.phonebook.lookup(name, now), (name, second))
        self.assertEqual((world.alice.punch.state, world.bob.punch.state), (UP, UP))
        refused = [
            stun.decodeErrorCode(m.get(stun.ERROR_CODE))[0]
            for recorder, _ in flooders
            for m in recorder.messages(messages.REGISTER, stun.ERROR)
        ]
        self.assertEqual(set(refused), {messages.PHONEBOOK_FULL})
        self.assertEqual(world.server.stats["phonebookFull"], 60 * 60 - 48)
        world.network.advance(61)
        _, late = flooders[0]
        register(world.server, late, "late", "alice", True)
        world.network.advance(1)
        self.assertIsNotNone(world.server.phonebook.lookup("late", world.clock.seconds()))

    def test_namesPerSourceBounded(self):
        """
        One source address and port gets at most 4 names by default, the
        others refused with 486; another port of the same IP gets its own.
        """
        site = Site()
        recorder, transport = site.client("203.0.113.1", 5000)
        for i in range(6):
            register(site.server, transport, f"n{i}")
        _, other = site.client("203.0.113.1", 5001)
        register(site.server, other, "m")
        site.network.advance(1)
        self.assertEqual(len(site.server.phonebook), 5)
        errors = recorder.messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(
            [stun.decodeErrorCode(e.get(stun.ERROR_CODE)) for e in errors],
            [(messages.QUOTA_REACHED, "this address holds 4 names already, the most it may")] * 2,
        )
        self.assertEqual(site.server.stats["quotaReached"], 2)
        self.assertEqual(site.server.drops.counts["names per address reached"], 2)

    def test_thousandPeersBehindOneIP(self):
        """
        With the default quotas, 1,000 peers behind one IP, each on a port
        of its own, all get in.
        """
        network = Network(latency=0.01)
        serverHost = network.host(SERVER[0])
        server = StageManagerProtocol(serverHost, Phonebook(100000, 60))
        serverHost.listenUDP(SERVER[1], server)
        host = network.host("198.51.100.1")
        for i in range(1000):
            transport = host.listenUDP(10000 + i, DatagramProtocol())
            register(server, transport, f"peer{i}", f"peer{i ^ 1}", True)
        network.advance(1)
        self.assertEqual(len(server.phonebook), 1000)
        self.assertEqual(server.stats["quotaReached"], 0)
        self.assertEqual(server.phonebook.held(("198.51.100.1", 10000)), (1, 1000))


class AmplificationTests(SynchronousTestCase):
    """
    To a source that has not proven its address, the stage manager never
    sends more bytes than it received.
    """

    def test_everyMessage(self):
        """
        For every kind of datagram from a fresh, unproven source, the bytes
        sent back are at most the bytes received; a bare Binding request
        gets exactly the 32 bytes RFC 8489 needs.
        """
        site = Site()
        _, alice = site.client("203.0.113.1")
        register(site.server, alice, "alice", "bob", True)
        site.network.advance(1)
        txid = stun.newTransactionID()
        cases = {
            "small registration": registration("carol"),
            "small seeking registration": registration("carol", "alice", True),
            "padded registration": padded("dave"),
            "padded registration introduced": padded("bob", "alice", True),
            "registration with a forged cookie": registration("erin", cookie=b"\x00" * 16),
            "invalid registration": stun.encode(
                stun.Message(messages.REGISTER, stun.REQUEST, txid, ((messages.NAME, b"a b"),))
            ),
            "padded invalid registration": stun.encode(
                stun.Message(
                    messages.REGISTER, stun.REQUEST, txid,
                    ((messages.NAME, b"a b"), (stun.PADDING, bytes(500))),
                )
            ),
            "unregister": messages.encodeUnregister(txid, "alice"),
            "introduction answer": messages.encodeSuccess(messages.INTRODUCE, txid),
            "unknown request": stun.encode(stun.Message(0x0FF, stun.REQUEST, txid)),
            "indication": stun.encode(stun.Message(messages.REGISTER, stun.INDICATION, txid)),
            "garbage": b"\x00\x01\x00\x00garbage",
            "text": b"alice",
        }
        ratios = {}
        for index, (kind, datagram) in enumerate(cases.items()):
            source = (f"198.51.100.{index + 1}", 4000)
            _, transport = site.client(source[0], source[1])
            transport.write(datagram, SERVER)
            site.network.advance(10)
            sent = site.bytesTo(source)
            ratios[kind] = sent / len(datagram)
            self.assertLessEqual(sent, len(datagram), kind)
        _, transport = site.client("198.51.100.200", 4000)
        transport.write(stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid)), SERVER)
        site.network.advance(1)
        self.assertEqual(site.bytesTo(("198.51.100.200", 4000)), 32)
        # A padded registration, whoever it seeks, gets the challenge
        # alone, as large as itself; a smaller one gets nothing.
        self.assertEqual(ratios["padded registration"], 1.0)
        self.assertEqual(ratios["padded registration introduced"], 1.0)
        self.assertEqual(ratios["small registration"], 0.0)

    def test_spoofedRegistrationNotReflected(self):
        """
        A registration "bob wants alice" spoofed from a victim's address,
        listing more victims as local addresses, while alice waits for bob:
        the victim gets a cookie challenge no larger than the registration,
        and alice sends nothing to any victim.
        """
        world = World(None, None)
        world.startPeer("alice", "bob", 5000)
        world.network.advance(5)
        victims = [f"192.0.2.{i}" for i in range(100, 109)]
        spoofer = world.network.host(victims[0]).listenUDP(4000, Recorder())
        request = messages.encodeRegistration(
            stun.newTransactionID(),
            messages.Registration("bob", ("alice",), tuple((v, 4000) for v in victims[1:]), ("alice",)),
            messages.UNPROVEN_REGISTRATION_BYTES,
        )
        for _ in range(4):
            spoofer.write(request, SERVER)
            world.network.advance(5)
        toVictims = [d for d in world.network.traffic if d.destination[0] in victims]
        self.assertEqual({d.source for d in toVictims}, {SERVER})
        self.assertLessEqual(max(len(d.data) for d in toVictims), len(request))
        self.assertEqual(world.server.stats["introductions"], 0)

    def test_unprovenNotIntroducedToOthers(self):
        """
        A peer that has not proven its address is never sent an introduction
        it did not ask for: a peer seeking it is told it is absent.
        """
        site = Site()
        spoofed, spoofedTransport = site.client("203.0.113.1")
        spoofedTransport.write(padded("alice", "bob", True), SERVER)
        site.network.advance(1)
        bob, bobTransport = site.client("203.0.113.2")
        register(site.server, bobTransport, "bob", "alice", True)
        site.network.advance(1)
        [answer] = bob.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_WAITING,))
        self.assertEqual(spoofed.messages(messages.INTRODUCE, stun.REQUEST), [])


class RateLimitTests(SynchronousTestCase):
    """
    Token buckets per source and for strangers in all.
    """

    def test_registrationFlood(self):
        """
        Registrations from one source past its bucket are dropped and
        counted.
        """
        site = Site(registrationLimit=sourceLimiter(20))
        # Many names from one source, which only the limiter should bound.
        site.server.phonebook.namesPerAddress = site.server.phonebook.namesPerIP = 1000
        _, transport = site.client("203.0.113.1")
        for i in range(100):
            register(site.server, transport, f"n{i}")
        site.network.advance(1)
        self.assertEqual(site.server.stats["registrations"], 40)
        self.assertEqual(site.server.drops.counts["rate-limited"], 60)

    def test_spoofedFloodFromVictimIPDoesNotBlockVictim(self):
        """
        Unproven registrations spoofed from a victim's IP, from any ports, are never charged to the victim's bucket.
        """
        site = Site(registrationLimit=sourceLimiter(20))
        _, spoofer = site.client("203.0.113.1", 7000)
        victim, victimTransport = site.client("203.0.113.1", 5000)
        rng = random.Random(3)
        for tick in range(20):
            for i in range(20):
                spoofer.port = rng.randrange(1024, 65536)
                spoofer.write(registration(f"x{rng.randrange(10**9)}"), SERVER)
            secret = heldSecret(victim.messages(messages.REGISTER, stun.SUCCESS))
            register(site.server, victimTransport, "alice", "bob", True, secret=secret)
            site.network.advance(0.1)
        answers = victim.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(len(answers), 20)
        self.assertEqual(site.server.drops.counts["rate-limited"], 0)

    def test_provenSourcesLimitedByAddressAndPort(self):
        """
        Proven registrations are limited per address and port: peers sharing one IP each get the whole rate.
        """
        site = Site(registrationLimit=sourceLimiter(20))
        # Many names from one source, which only the limiter should bound.
        site.server.phonebook.namesPerAddress = site.server.phonebook.namesPerIP = 1000
        transports = [site.client("203.0.113.1", 5000 + i)[1] for i in range(10)]
        for transport in transports:
            for i in range(5):
                register(site.server, transport, f"n{transport.port}-{i}")
        site.network.advance(1)
        self.assertEqual(site.server.stats["registrations"], 50)
        self.assertEqual(site.server.drops.counts["rate-limited"], 0)

    def test_unprovenChallengesBoundedGlobally(self):
        """
        Cookies for unproven registrations are answered statelessly, within the limiter's bound for all sources.
        """
        site = Site(registrationLimit=sourceLimiter(1))
        _, spoofer = site.client("203.0.113.1", 7000)
        for i in range(3000):
            spoofer.port = 1024 + i
            spoofer.write(registration(f"x{i}"), SERVER)
        site.network.advance(0.5)
        self.assertEqual(site.server.stats["challenges"], 2000)
        self.assertEqual(site.server.drops.counts["rate-limited"], 1000)
        self.assertEqual(len(site.server.registrationLimit), 0)

    def test_bindingSpoofedFromVictimIPDoesNotStarveVictim(self):
        """
        Binding requests spoofed from a victim's IP at other ports do not use up the victim's Binding budget.
        """
        site = Site(bindingLimit=sourceLimiter(20))
        _, spoofer = site.client("203.0.113.1", 7000)
        victim, victimTransport = site.client("203.0.113.1", 5000)
        request = lambda: stun.encode(
            stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID())
        )
        for i in range(500):
            spoofer.port = 1024 + i
            spoofer.write(request(), SERVER)
        victimTransport.write(request(), SERVER)
        site.network.advance(1)
        self.assertEqual(len(victim.received), 1)

    def test_bindingFlood(self):
        """
        Binding answers to one source are capped by its bucket: a burst of
        twice the rate, then the rate.
        """
        site = Site(bindingLimit=sourceLimiter(20))
        recorder, transport = site.client("203.0.113.1")
        for second in range(3):
            for i in range(100):
                transport.write(
                    stun.encode(stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID())),
                    SERVER,
                )
            site.network.advance(1.001)
        self.assertEqual(len(recorder.received), 40 + 20 + 20)

    def test_peersConnectDuringFlood(self):
        """
        While thousands of strangers flood the stage manager with padded
        registrations from spoofed addresses, two real peers still connect:
        past the strangers' budget the flood gets only cookies, and the
        peers' echoed cookies get them through.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.server.registrationLimit = sourceLimiter(20)
        flooders = [world.network.host(f"192.0.2.{i}") for i in range(100, 200)]
        ports = [host.listenUDP(7000, DatagramProtocol()) for host in flooders]
        rng = random.Random(1)

        def flood():
            for port in ports:
                port.write(padded(f"x{rng.randrange(10**9)}", "alice", True), SERVER)

        world.startPeer("alice", "bob", 5000)
        for _ in range(20):
            flood()
            world.network.advance(0.05)
        world.startPeer("bob", "alice", 6000)
        for _ in range(100):
            flood()
            world.network.advance(0.05)
        self.assertEqual((world.alice.punch.state, world.bob.punch.state), (UP, UP))
        self.assertGreater(world.server.stats["challenges"], 5000)
        self.assertLessEqual(len(world.server.phonebook), 100)


class SharedSecretTests(SynchronousTestCase):
    """
    C{--secret-file}: every message between stage manager and peers carries
    MESSAGE-INTEGRITY-SHA256.
    """

    KEY = messages.sharedKey(b"correct horse battery staple")

    def test_peersConnect(self):
        """
        A stage manager and peers sharing the secret work as without it,
        and every datagram between them carries its integrity.
        """
        world = World(portRestrictedCone(), portRestrictedCone())
        world.serverPort.stopListening()
        world.server = StageManagerProtocol(world.serverHost, Phonebook(100, 60), key=self.KEY)
        world.serverPort = world.serverHost.listenUDP(SERVER[1], world.server)
        world.punchSettings["key"] = self.KEY
        world.start()
        world.network.advance(5)
        self.assertEqual((world.alice.punch.state, world.bob.punch.state), (UP, UP))
        withServer = [
            d for d in world.network.delivered()
            if SERVER in (d.destination, d.source)
        ]
        self.assertTrue(withServer)
        for d in withServer:
            self.assertTrue(stun.verifyIntegritySHA256(d.data, self.KEY))

    def test_withoutOrWrongDropped(self):
        """
        A datagram without the integrity, or with one under another key, is
        dropped and counted, unanswered.
        """
        site = Site(key=self.KEY)
        recorder, transport = site.client("203.0.113.1")
        plain = registration("alice")
        wrong = stun.encode(stun.decode(plain), integritySHA256Key=b"k" * 32, fingerprint=True)
        for datagram in (plain, wrong, stun.encode(stun.Message(stun.BINDING, stun.REQUEST, b"x" * 12))):
            transport.write(datagram, SERVER)
        site.network.advance(1)
        self.assertEqual(recorder.received, [])
        self.assertEqual(site.server.drops.counts["unauthenticated"], 3)
        self.assertEqual(len(site.server.phonebook), 0)

    def test_peerDropsUnsignedServerDatagrams(self):
        """
        A peer with the secret drops datagrams from the stage manager's
        address that lack it: a spoofed introduction changes nothing.
        """
        network = Network()
        serverHost = network.host(SERVER[0])
        spoof = serverHost.listenUDP(SERVER[1], DatagramProtocol())
        host = network.host("203.0.113.1")
        peer = PeerProtocol(host, SERVER, "alice", "bob", key=self.KEY, discoverNAT=False)
        host.listenUDP(5000, peer)
        txid = stun.newTransactionID()
        spoof.write(
            messages.encodeIntroduction(
                txid, messages.Introduction("bob", ("192.0.2.66", 1), (), b"k" * 16), b"k" * 16
            ),
            ("203.0.113.1", 5000),
        )
        network.advance(1)
        self.assertIsNone(peer.punch)
        self.assertEqual(peer.drops.counts["unauthenticated"], 1)


class BoundedStateTests(SynchronousTestCase):
    """
    Memory stays bounded under floods.
    """

    def test_manyNamesManySources(self):
        """
        Proven registrations of random names from thousands of sources
        leave at most the phonebook's capacity of entries, and limiter
        state for a bounded number of sources; the peer registered before
        the flood keeps its entry, and the others are refused and counted.
        """
        site = Site(registrationLimit=sourceLimiter(20))
        alice, aliceTransport = site.client("203.0.113.1")
        register(site.server, aliceTransport, "alice", "bob", True)
        site.network.advance(1)
        rng = random.Random(2)
        for i in range(3000):
            address = f"10.{i // 250}.{i % 250}.1"
            _, transport = site.client(address, 4000)
            register(site.server, transport, f"n{rng.randrange(10**9)}", f"m{i}", True)
            if i % 100 == 0:
                site.network.advance(0.1)
        site.network.advance(1)
        self.assertEqual(len(site.server.phonebook), 100)
        self.assertLessEqual(len(site.server.registrationLimit), 10000)
        self.assertEqual(site.server.stats["phonebookFull"], 3000 - 99)
        self.assertIsNotNone(site.server.phonebook.lookup("alice", site.network.clock.seconds()))

    def test_waitingRefreshesNotLogged(self):
        """
        A proven peer refreshing while the peer it seeks is absent is logged once, not at every refresh.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        site = Site()
        recorder, transport = site.client("203.0.113.1")
        for i in range(10):
            secret = heldSecret(recorder.messages(messages.REGISTER, stun.SUCCESS))
            register(site.server, transport, "alice", "bob", True, secret=secret)
            site.network.advance(1)
        waiting = [e for e in events if "no introduction yet" in e["log_format"]]
        self.assertEqual(len(waiting), 1)
        self.assertEqual(site.server.stats["registrations"], 10)

    def test_peerEventsLogRateLimited(self):
        """
        Proven registrations of new names from a thousand addresses at once
        log at most the burst of peer events; the rest are counted, and the
        count is logged once, ten seconds on.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        site = Site()
        site.server.phonebook.maxEntries = 2000
        for i in range(1000):
            _, transport = site.client(f"10.1.{i // 250}.{i % 250}", 4000)
            register(site.server, transport, f"n{i}", "nobody", True)
        site.network.advance(11)
        logged = [e for e in events if e.get("log_namespace", "").startswith("punchd.server")]
        perPeer = [e for e in logged if "registered from" in e["log_format"]
                   or "no introduction yet" in e["log_format"]]
        self.assertLessEqual(len(perPeer), 200 + 20 * 11)
        [note] = [e for e in logged if "not logged" in e["log_format"]]
        self.assertEqual(note["count"] + len(perPeer), 2000)
        self.assertEqual(site.server.stats["unloggedEvents"], note["count"])
        self.assertIn(
            f"\npunchd_unlogged_events_total {note['count']}\n", exposition(site.server)
        )

    def test_warningsRateLimited(self):
        """
        A flood of bad datagrams costs one warning per interval, and each
        warning says how many went unreported.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        site = Site()
        _, transport = site.client("203.0.113.1")
        for second in range(30):
            for i in range(100):
                transport.write(b"\x00\x01junk", SERVER)
            site.network.advance(1)
        warnings = [e for e in events if e["log_format"].startswith("Dropped")]
        self.assertEqual(len(warnings), 3)
        self.assertEqual(warnings[1]["unreported"], 1000)


class FuzzTests(SynchronousTestCase):
    """
    Random and mutated datagrams never raise, and leave the state sound.
    """

    def setUp(self):
        self.site = Site()
        _, alice = self.site.client("203.0.113.1")
        register(self.site.server, alice, "alice", "bob", True)
        self.site.network.advance(1)
        self.samples = [
            registration("bob", "alice", True, [("10.0.0.2", 1)]),
            padded("carol", "dave", True),
            messages.encodeUnregister(b"u" * 12, "alice", b"s" * 16),
            messages.encodeSuccess(messages.INTRODUCE, b"i" * 12),
            stun.encode(stun.Message(stun.BINDING, stun.REQUEST, b"b" * 12)),
        ]
        self.sender = self.site.network.host("198.51.100.9").listenUDP(4000, DatagramProtocol())

    def deliver(self, datagram):
        self.site.server.datagramReceived(datagram, ("198.51.100.9", 4000))
        self.site.network.advance(0)
        book = self.site.server.phonebook
        self.assertLessEqual(len(book), book.maxEntries)
        alice = book.lookup("alice", self.site.network.clock.seconds())
        self.assertEqual(alice.address, ("203.0.113.1", 5000))

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_randomDatagrams(self, datagram):
        """
        Random bytes are dropped without an exception, and alice's entry is
        untouched.
        """
        self.deliver(datagram)

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def test_mutatedMessages(self, data):
        """
        Valid messages truncated, extended, with bytes flipped or lengths
        rewritten, never raise, and alice's entry is untouched.
        """
        datagram = bytearray(data.draw(st.sampled_from(self.samples)))
        for _ in range(data.draw(st.integers(1, 4))):
            how = data.draw(st.sampled_from(["flip", "cut", "grow", "length"]))
            if how == "flip" and datagram:
                i = data.draw(st.integers(0, len(datagram) - 1))
                datagram[i] ^= data.draw(st.integers(1, 255))
            elif how == "cut":
                del datagram[data.draw(st.integers(0, len(datagram))):]
            elif how == "grow":
                datagram += data.draw(st.binary(max_size=64))
            elif how == "length" and len(datagram) >= 24:
                i = data.draw(st.sampled_from([2, 22]))
                datagram[i : i + 2] = data.draw(st.integers(0, 0xFFFF)).to_bytes(2, "big")
        self.deliver(bytes(datagram))

    @settings(max_examples=200, deadline=None)
    @given(st.binary(max_size=300), st.booleans())
    def test_peerRandomDatagrams(self, datagram, fromServer):
        """
        A peer fed random bytes, from the stage manager's address or
        another, never raises and keeps its path.
        """
        world = self.world()
        peer = world.alice
        before = (peer.publicAddress, peer.punch.state, peer.punch.selected.address)
        peer.datagramReceived(datagram, SERVER if fromServer else ("192.0.2.66", 1))
        world.network.advance(0)
        self.assertEqual(before, (peer.publicAddress, peer.punch.state, peer.punch.selected.address))

    def world(self):
        if not hasattr(self, "_world"):
            self._world = World(portRestrictedCone(), portRestrictedCone())
            self._world.start()
            self._world.network.advance(5)
        return self._world
