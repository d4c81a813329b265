"""
Tests for compact refreshes: L{messages.REFRESH} on the stage manager's
fast path, and the registrar's use of it.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.phonebook import Phonebook
from punchd.registration import Registrar
from punchd.server import StageManagerProtocol, sourceLimiter

ALICE = ("198.51.100.1", 4000)
ELSEWHERE = ("198.51.100.2", 4000)


class _Transport:
    def __init__(self):
        self.sent = []

    def write(self, datagram, address):
        self.sent.append((datagram, address))

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", 3478)


class _Peer:
    """
    What a peer keeps from its registration: the answer's secret and
    handle.
    """

    def __init__(self, answer):
        registered = messages.parseRegistered(stun.decode(answer))
        self.handle = registered.handle
        self.lifetime = registered.handleLifetime
        self.key = messages.refreshKey(registered.secret)
        self.counter = 0

    def refresh(self, counter=None, txid=None):
        self.counter = self.counter + 1 if counter is None else counter
        txid = txid or self.counter.to_bytes(12, "big")
        return messages.encodeRefresh(txid, self.handle, self.counter, self.key)


class StageManagerRefreshTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.book = Phonebook(100, 60.0)
        self.server = StageManagerProtocol(
            self.clock, self.book, registrationLimit=sourceLimiter(5)
        )
        self.transport = _Transport()
        self.server.makeConnection(self.transport)
        self.addCleanup(self.server.stopProtocol)

    def register(self, name="alice", address=ALICE, txid=b"r" * 12):
        datagram = messages.encodeRegistration(
            txid,
            messages.Registration(name, (), (), (), self.server.cookies.issue(address)),
            messages.UNPROVEN_REGISTRATION_BYTES,
        )
        self.server.datagramReceived(datagram, address)
        answer, to = self.transport.sent.pop()
        self.assertEqual(to, address)
        return _Peer(answer)

    def send(self, datagram, address=ALICE):
        """
        Feed C{datagram} from C{address}; return what was sent back.
        """
        del self.transport.sent[:]
        self.server.datagramReceived(datagram, address)
        return [d for d, to in self.transport.sent]

    def test_handleGiven(self):
        """
        A proven registration's answer carries a handle, good as long as a
        cookie issued now.
        """
        peer = self.register()
        self.assertEqual(len(peer.handle), messages.HANDLE_BYTES)
        self.assertEqual(peer.lifetime, 120)

    def test_wire(self):
        """
        A refresh is 48 bytes whose first byte says STUN to an RFC 7983
        demultiplexer, and decodes as a STUN REFRESH request.
        """
        datagram = self.register().refresh()
        self.assertEqual(len(datagram), messages.REFRESH_BYTES)
        self.assertLess(datagram[0], 4)
        message = stun.decode(datagram)
        self.assertEqual((message.method, message.messageClass), (messages.REFRESH, stun.REQUEST))

    def test_refreshKeepsEntry(self):
        """
        A refresh is answered with the 20-byte header alone, and keeps the
        entry another TTL.
        """
        peer = self.register()
        self.clock.advance(50)
        [answer] = self.send(peer.refresh(txid=b"t" * 12))
        self.assertEqual(answer, messages.encodeRefreshed(b"t" * 12))
        self.clock.advance(50)
        self.server._sweep()
        self.assertIsNotNone(self.book.lookup("alice", self.clock.seconds()))
        self.assertEqual(self.server.stats["refreshes"], 1)

    def test_answerDecodes(self):
        """
        The answer is a STUN REFRESH success.
        """
        [answer] = self.send(self.register().refresh())
        message = stun.decode(answer)
        self.assertEqual((message.method, message.messageClass), (messages.REFRESH, stun.SUCCESS))

    def test_otherAddress(self):
        """
        A refresh from another address than the entry's is told to register
        in full, in fewer bytes than it came in, and moves nothing.
        """
        datagram = self.register().refresh()
        [answer] = self.send(datagram, ELSEWHERE)
        self.assertLessEqual(len(answer), len(datagram))
        message = stun.decode(answer)
        self.assertEqual(message.messageClass, stun.ERROR)
        self.assertEqual(
            stun.decodeErrorCode(message.get(stun.ERROR_CODE))[0], messages.REGISTER_IN_FULL
        )
        self.assertEqual(self.book.lookup("alice", self.clock.seconds()).address, ALICE)
        self.assertEqual(self.server.drops.counts["refresh refused"], 1)

    def test_unknownHandle(self):
        """
        A refresh with a handle the stage manager never gave is told to
        register in full, in fewer bytes than it came in.
        """
        peer = self.register()
        peer.handle = bytes(8)
        datagram = peer.refresh()
        [answer] = self.send(datagram)
        self.assertLessEqual(len(answer), len(datagram))
        self.assertEqual(stun.decode(answer).messageClass, stun.ERROR)

    def test_staleHandle(self):
        """
        A handle older than its lifetime is refused: the address is proven
        again by a full registration, as often as a cookie would be.
        """
        peer = self.register()
        for _ in range(5):
            self.clock.advance(20)
            self.assertEqual(stun.decode(self.send(peer.refresh())[0]).messageClass, stun.SUCCESS)
        self.clock.advance(20)
        [answer] = self.send(peer.refresh())
        self.assertEqual(stun.decode(answer).messageClass, stun.ERROR)

    def test_wrongMAC(self):
        """
        A refresh with a MAC not keyed from the name's secret is dropped,
        counted, and keeps nothing.
        """
        peer = self.register()
        peer.key = bytes(16)
        self.assertEqual(self.send(peer.refresh()), [])
        self.assertEqual(self.server.stats["refreshesUnauthenticated"], 1)
        self.assertEqual(self.server.drops.counts["unauthenticated refresh"], 1)
        self.assertEqual(self.server.stats["refreshes"], 0)

    def test_replayed(self):
        """
        A captured refresh sent again after a later one, or a counter not
        higher than the last taken, is dropped and counted.
        """
        peer = self.register()
        old = peer.refresh()
        self.send(old)
        self.send(peer.refresh())
        self.assertEqual(self.send(old), [])
        self.assertEqual(self.send(peer.refresh(counter=1, txid=b"x" * 12)), [])
        self.assertEqual(self.server.stats["refreshesReplayed"], 2)
        self.assertEqual(self.server.stats["refreshes"], 2)

    def test_replayedAfterExpiry(self):
        """
        A captured refresh does not bring back an entry that expired.
        """
        peer = self.register()
        datagram = peer.refresh()
        self.clock.advance(61)
        self.server._sweep()
        [answer] = self.send(datagram)
        self.assertEqual(stun.decode(answer).messageClass, stun.ERROR)
        self.assertIsNone(self.book.lookup("alice", self.clock.seconds()))

    def test_retransmission(self):
        """
        The last refresh again, its answer lost, is answered again and
        changes nothing.
        """
        peer = self.register()
        datagram = peer.refresh()
        self.send(datagram)
        [answer] = self.send(datagram)
        self.assertEqual(stun.decode(answer).messageClass, stun.SUCCESS)
        self.assertEqual(self.server.stats["refreshes"], 1)

    def test_newRegistrationReplacesHandle(self):
        """
        A full registration gives a new handle; the old one is refused.
        """
        peer = self.register()
        old = peer.refresh()
        # The name is held: its holder proves the secret it was given.
        secret = self.book.lookup("alice", self.clock.seconds()).secret
        datagram = messages.encodeRegistration(
            b"s" * 12,
            messages.Registration("alice", (), (), (), self.server.cookies.issue(ALICE)),
            messages.UNPROVEN_REGISTRATION_BYTES,
            messages.registrationKey(secret),
        )
        [answer] = self.send(datagram)
        self.assertNotEqual(messages.parseRegistered(stun.decode(answer)).handle, peer.handle)
        self.assertEqual(stun.decode(self.send(old)[0]).messageClass, stun.ERROR)

    def test_rateLimited(self):
        """
        Refreshes are charged to their proven source's rate limit.
        """
        peer = self.register()
        answered = sum(len(self.send(peer.refresh())) for _ in range(20))
        self.assertLess(answered, 20)
        self.assertGreater(self.server.stats["rateLimited"], 0)

    def test_malformed(self):
        """
        A datagram of a refresh's size and head but no REFRESH-PROOF is
        dropped and counted; so is a REFRESH of another size.
        """
        datagram = self.register().refresh()
        broken = datagram[:20] + b"\x00\x01" + datagram[22:]
        self.assertEqual(self.send(broken), [])
        self.assertEqual(self.server.drops.counts["malformed"], 1)
        short = datagram[:2] + (20).to_bytes(2, "big") + datagram[4:44]
        self.assertEqual(self.send(short), [])
        self.assertEqual(self.server.drops.counts["malformed"], 2)

    def test_unprovenNeverAmplified(self):
        """
        Whatever a refresh from an unproven source holds, no more bytes go
        back than came in.
        """
        peer = self.register()
        for datagram in (peer.refresh(), bytes(48), messages.REFRESH_HEAD + bytes(40)):
            for address in (ELSEWHERE, ("203.0.113.5", 9)):
                for answer in self.send(datagram, address):
                    self.assertLessEqual(len(answer), len(datagram))

    def test_handlesForgotten(self):
        """
        Handles run out with their lifetime and are swept.
        """
        self.register()
        self.clock.advance(121)
        self.server._sweep()
        self.assertEqual(self.server._handles, {})
        self.assertEqual(self.server._handleOf, {})


class RegistrarRefreshTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.seeking = ()
        self.registrar = Registrar(
            self.clock,
            lambda datagram, address: self.sent.append(stun.decode(datagram)),
            ("192.0.2.1", 3478),
            "alice",
            ("bob",),
            (("10.0.0.2", 5000),),
            5000,
            lambda: self.seeking,
            interval=20.0,
            jitter=0.0,
        )
        self.addCleanup(self.registrar.stop)
        self.registrar.start()
        [request] = self.sent
        self.registrar.handle(
            stun.decode(
                messages.encodeRegistered(
                    request.transactionID,
                    ALICE,
                    60,
                    (),
                    b"c" * 16,
                    b"s" * 16,
                    None,
                    (b"h" * 8, 120),
                )
            )
        )
        del self.sent[:]

    def test_refreshWhenNothingChanged(self):
        """
        With a handle and nothing changed, the next refresh is a REFRESH
        with the handle, signed with the name's secret.
        """
        self.clock.advance(20)
        [refresh] = self.sent
        self.assertEqual(refresh.method, messages.REFRESH)
        handle, counter, mac = messages.parseRefresh(refresh)
        self.assertEqual(handle, b"h" * 8)
        self.assertEqual(
            mac,
            messages.refreshMAC(
                messages.refreshKey(b"s" * 16), refresh.transactionID, handle, counter
            ),
        )

    def test_countersRise(self):
        """
        Each refresh carries a higher counter.
        """
        counters = []
        for _ in range(3):
            self.clock.advance(20)
            refresh = self.sent[-1]
            counters.append(messages.parseRefresh(refresh)[1])
            self.registrar.handle(stun.decode(messages.encodeRefreshed(refresh.transactionID)))
        self.assertEqual(counters, sorted(set(counters)))

    def test_refusedRegistersInFull(self):
        """
        A refresh the stage manager does not take is followed at once by a
        full registration.
        """
        self.clock.advance(20)
        [refresh] = self.sent
        self.registrar.handle(stun.decode(messages.encodeRefreshRefused(refresh.transactionID)))
        self.assertEqual(self.sent[-1].method, messages.REGISTER)

    def test_unansweredRegistersInFull(self):
        """
        A refresh left unanswered is followed by a full registration.
        """
        self.clock.advance(20)
        self.clock.pump([0.5, 1.0])
        self.assertEqual([m.method for m in self.sent], [messages.REFRESH] * 2 + [messages.REGISTER])

    def test_seekingRegistersInFull(self):
        """
        A peer that seeks an introduction registers in full.
        """
        self.seeking = ("bob",)
        self.clock.advance(20)
        self.assertEqual(self.sent[-1].method, messages.REGISTER)

    def test_changedRegistersInFull(self):
        """
        A peer whose local addresses changed registers in full.
        """
        self.registrar.localAddresses = (("10.0.0.3", 5000),)
        self.clock.advance(20)
        self.assertEqual(self.sent[-1].method, messages.REGISTER)

    def test_handleRunsOut(self):
        """
        Near the end of its handle's lifetime the peer registers in full.
        """
        for _ in range(5):
            self.clock.advance(20)
            refresh = self.sent[-1]
            self.registrar.handle(stun.decode(messages.encodeRefreshed(refresh.transactionID)))
        self.clock.advance(20)
        self.assertEqual(self.sent[-1].method, messages.REGISTER)


class EndToEndTests(SynchronousTestCase):
    def test_connectedPeersRefreshCompactly(self):
        """
        Two peers with a direct path, seeking nobody, keep their entries
        with compact refreshes, on a simulated network.
        """
        from punchd.test.helpers import World
        from punchd.testing import portRestrictedCone

        world = World(portRestrictedCone(), portRestrictedCone(), interval=20)
        world.start()
        world.network.advance(100)
        self.assertGreater(world.server.stats["refreshes"], 4)
        self.assertEqual(world.server.stats["refreshesRefused"], 0)
        self.assertIsNotNone(world.server.phonebook.lookup("alice", world.clock.seconds()))


class SharedSecretRefreshTests(SynchronousTestCase):
    def test_signedRefresh(self):
        """
        With a shared secret, a refresh carries MESSAGE-INTEGRITY-SHA256,
        goes through the decoder under the same rules, and is answered.
        """
        clock = Clock()
        clock.advance(1000)
        key = messages.sharedKey(b"shared")
        server = StageManagerProtocol(clock, Phonebook(10, 60.0), key=key)
        transport = _Transport()
        server.makeConnection(transport)
        self.addCleanup(server.stopProtocol)
        registration = messages.encodeRegistration(
            b"r" * 12,
            messages.Registration("alice", (), (), (), server.cookies.issue(ALICE)),
            messages.UNPROVEN_REGISTRATION_BYTES,
        )
        server.datagramReceived(stun.addIntegritySHA256(registration, key), ALICE)
        peer = _Peer(transport.sent.pop()[0])
        server.datagramReceived(stun.addIntegritySHA256(peer.refresh(), key), ALICE)
        [(answer, _)] = transport.sent
        self.assertTrue(stun.verifyIntegritySHA256(answer, key))
        self.assertEqual(stun.decode(answer).messageClass, stun.SUCCESS)
        self.assertEqual(server.stats["refreshes"], 1)
