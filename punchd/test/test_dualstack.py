"""
Tests for dual-stack support: the messages that carry a peer's address of
its other family, the phonebook that keeps it, a path that weighs the two
families, and the registration that tells the stage manager of it.
"""

from twisted.internet.address import IPv6Address
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.trial.unittest import SynchronousTestCase

from punchd import frames, messages, registration, stun
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.punching import IPV4, IPV6, PUBLIC, UP, Punch
from punchd.test.helpers import SERVER, heldSecret
from punchd.test.test_punching import BOB_INDEX, KEY, Observer
from punchd.test.test_server import StageManagerTestMixin

TXID = b"t" * 12
V4 = ("203.0.113.1", 6000)
V6 = ("2001:db8::1", 6000)


class MessagesTests(SynchronousTestCase):
    """
    Tests for the dual-stack attributes of L{punchd.messages}.
    """

    def test_secondFamilyRoundTrip(self):
        """
        A registration with C{secondFamily} carries an empty SECOND-FAMILY
        and reads back with it set.
        """
        datagram = messages.encodeRegistration(
            TXID, messages.Registration("alice", secondFamily=True), 0, b"k" * 16
        )
        message = stun.decode(datagram)
        self.assertEqual(message.get(messages.SECOND_FAMILY), b"")
        self.assertTrue(messages.parseRegistration(message).secondFamily)

    def test_plainRegistrationIsNotSecondFamily(self):
        """
        A registration without C{secondFamily} carries no SECOND-FAMILY.
        """
        datagram = messages.encodeRegistration(TXID, messages.Registration("alice"), 0)
        message = stun.decode(datagram)
        self.assertIsNone(message.get(messages.SECOND_FAMILY))
        self.assertFalse(messages.parseRegistration(message).secondFamily)

    def test_introductionOtherAddress(self):
        """
        An introduction's other-family address, IPv6 or IPv4, travels in
        PEER-OTHER-ADDRESS and reads back as it was.
        """
        for address, other in [(V4, V6), (V6, V4)]:
            introduction = messages.Introduction("bob", address, (), KEY, otherAddress=other)
            message = stun.decode(messages.encodeIntroduction(TXID, introduction, KEY))
            self.assertIsNotNone(message.get(messages.PEER_OTHER_ADDRESS))
            self.assertEqual(messages.parseIntroduction(message), introduction)

    def test_introductionWithoutOtherAddress(self):
        """
        An introduction without an other-family address reads back with
        L{None}.
        """
        introduction = messages.Introduction("bob", V4, (), KEY)
        message = stun.decode(messages.encodeIntroduction(TXID, introduction, KEY))
        self.assertIsNone(message.get(messages.PEER_OTHER_ADDRESS))
        self.assertIsNone(messages.parseIntroduction(message).otherAddress)

    def test_candidateOther(self):
        """
        A candidate of the other family travels in PEER-OTHER-ADDRESS, is of
        kind "other family" and reads back as it was.
        """
        candidate = messages.RelayCandidate("bob", V6, other=True)
        self.assertEqual(candidate.kind, "other family")
        message = stun.decode(messages.encodeCandidate(TXID, candidate, KEY))
        self.assertIsNotNone(message.get(messages.PEER_OTHER_ADDRESS))
        self.assertIsNone(message.get(messages.RELAYED_ADDRESS))
        self.assertEqual(messages.parseCandidate(message), candidate)

    def test_candidateWithTwoAddressesRefused(self):
        """
        A candidate with PEER-OTHER-ADDRESS and another address attribute is
        ambiguous, and refused.
        """
        for attribute in (messages.RELAYED_ADDRESS, messages.MAPPED_ADDRESS):
            datagram = stun.encode(
                stun.Message(
                    messages.CANDIDATE,
                    stun.REQUEST,
                    TXID,
                    (
                        (messages.NAME, b"bob"),
                        (attribute, stun.encodeXorAddress(*V4, TXID)),
                        (messages.PEER_OTHER_ADDRESS, stun.encodeXorAddress(*V6, TXID)),
                    ),
                )
            )
            self.assertRaises(
                messages.InvalidMessage, messages.parseCandidate, stun.decode(datagram)
            )


class AlsoAtTests(SynchronousTestCase):
    """
    Tests for L{Phonebook.alsoAt} and L{punchd.phonebook.Entry.secondAddress}.
    """

    def test_liveEntry(self):
        """
        A live entry takes the address, which holds for the TTL from then.
        """
        book = Phonebook(10, 60)
        book.register("alice", V4, (), ("bob",), 0)
        self.assertTrue(book.alsoAt("alice", V6, 10))
        entry = book.lookup("alice", 10)
        self.assertEqual(entry.secondAddress(10), V6)
        self.assertEqual(entry.secondAddress(69.9), V6)
        self.assertIsNone(entry.secondAddress(70))

    def test_missingName(self):
        """
        A name not registered, or expired, takes nothing.
        """
        book = Phonebook(10, 60)
        self.assertFalse(book.alsoAt("alice", V6, 0))
        book.register("alice", V4, (), ("bob",), 0)
        self.assertFalse(book.alsoAt("alice", V6, 60))

    def test_noSecondAddress(self):
        """
        An entry never told one has no address of the other family.
        """
        book = Phonebook(10, 60)
        entry, _ = book.register("alice", V4, (), ("bob",), 0)
        self.assertIsNone(entry.secondAddress(0))

    def test_copyKeepsIt(self):
        """
        A copy of an entry keeps its address of the other family.
        """
        book = Phonebook(10, 60)
        book.register("alice", V4, (), ("bob",), 0)
        book.alsoAt("alice", V6, 0)
        self.assertEqual(book.lookup("alice", 1).copy().secondAddress(1), V6)


class FamilyWeighingTests(SynchronousTestCase):
    """
    Tests for how a L{Punch} weighs a candidate of the other family against
    the one its path is up over.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.observer = Observer()
        self.logs = EventLoggingObserver.createWithCleanup(self, Punch.log.observer)

    def makePunch(self):
        self.punch = Punch(
            self.clock,
            lambda datagram, address: self.sent.append(
                (
                    None if frames.isFrame(datagram) else stun.decode(datagram),
                    address,
                    self.clock.seconds(),
                )
            ),
            "alice",
            messages.Introduction("bob", V4, (), KEY, otherAddress=V6),
            self.observer,
            index=0xA11CE5,
        )
        self.punch.start()

    def answerAfter(self, address, rtt):
        """
        Wait for the next probe to C{address} and answer it C{rtt} seconds
        after it was sent, as bob would.
        """
        count = len(self.probes(address))
        while len(self.probes(address)) == count:
            self.clock.advance(0.01)
        probe, sentAt = self.probes(address)[-1]
        self.clock.advance(sentAt + rtt - self.clock.seconds())
        datagram = messages.encodeProbeAnswer(
            probe.transactionID, ("198.51.100.1", 5000), KEY, BOB_INDEX
        )
        return self.punch.handle(datagram, stun.decode(datagram), address)

    def probes(self, address):
        return [
            (m, t)
            for m, a, t in self.sent
            if a == address and m is not None and m.method == stun.BINDING
            and m.messageClass == stun.REQUEST
        ]

    def messagesLogged(self):
        return [e["log_format"] for e in self.logs]

    def up(self, first, rtt):
        """
        Bring the path up over C{first}, answered at once with C{rtt}.
        """
        self.makePunch()
        probe, sentAt = self.probes(first)[-1]
        self.clock.advance(sentAt + rtt - self.clock.seconds())
        datagram = messages.encodeProbeAnswer(
            probe.transactionID, ("198.51.100.1", 5000), KEY, BOB_INDEX
        )
        self.assertTrue(self.punch.handle(datagram, stun.decode(datagram), first))
        self.assertEqual(self.punch.state, UP)

    def test_family(self):
        """
        L{Punch.family} is L{None} until the path is up, then that of the
        selected candidate; each candidate knows its family.
        """
        self.makePunch()
        self.assertIsNone(self.punch.family)
        self.assertEqual(
            sorted((c.address, c.family) for c in self.punch.candidates),
            sorted([(V4, IPV4), (V6, IPV6)]),
        )
        self.punch = None
        self.up(V4, 0.02)
        self.assertEqual(self.punch.family, IPV4)

    def test_tieMovesToIPv6Once(self):
        """
        An IPv6 rival answering within the margin of the IPv4 path's round
        trip takes the path, once, and the observer is told once.
        """
        self.up(V4, 0.02)
        self.assertTrue(self.answerAfter(V6, 0.021))
        self.assertEqual(self.punch.family, IPV6)
        self.assertEqual(self.observer.events, ["up", ("moved", PUBLIC, PUBLIC)])
        moved = [e for e in self.logs if e["log_format"].startswith("Path to {peer} moved")]
        self.assertEqual([e["why"] for e in moved], ["IPv6 on a tie"])
        self.clock.advance(5)
        self.assertEqual(self.observer.events, ["up", ("moved", PUBLIC, PUBLIC)])
        self.assertEqual(self.punch.family, IPV6)

    def test_slowerIPv6Kept(self):
        """
        An IPv6 rival 30 % slower leaves the path over IPv4, and that is
        logged.
        """
        self.up(V4, 0.02)
        self.assertTrue(self.answerAfter(V6, 0.026))
        self.assertEqual(self.punch.family, IPV4)
        self.assertEqual(self.observer.events, ["up"])
        self.assertTrue(
            any(f.startswith("Keeping the path to {peer}") for f in self.messagesLogged())
        )

    def test_fasterIPv4Taken(self):
        """
        Over IPv6, an IPv4 rival 30 % faster takes the path, for a lower
        round trip.
        """
        self.up(V6, 0.02)
        self.assertTrue(self.answerAfter(V4, 0.014))
        self.assertEqual(self.punch.family, IPV4)
        self.assertEqual(self.observer.events, ["up", ("moved", PUBLIC, PUBLIC)])
        moved = [e for e in self.logs if e["log_format"].startswith("Path to {peer} moved")]
        self.assertEqual([e["why"] for e in moved], ["a lower round trip"])

    def test_weighedOnce(self):
        """
        Once weighed, the families are not weighed again: the rival is no
        longer probed and the path never moves back.
        """
        self.up(V4, 0.02)
        self.answerAfter(V6, 0.021)
        self.sent.clear()
        self.clock.advance(2)
        self.assertEqual(self.probes(V4), [])
        self.assertEqual(self.observer.events, ["up", ("moved", PUBLIC, PUBLIC)])


class FakeRegistrar:
    """
    What L{registration.SecondFamily} reads of a L{registration.Registrar}.
    """

    name = "alice"
    secret = None


SERVER6 = ("2001:db8::53", 3478)


class SecondFamilyTests(SynchronousTestCase):
    """
    Tests for L{registration.SecondFamily}.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.registrar = FakeRegistrar()
        self.second = registration.SecondFamily(
            self.clock,
            lambda datagram, address: self.sent.append((stun.decode(datagram), address, datagram)),
            SERVER6,
            self.registrar,
            interval=20,
            random=lambda: 0.5,
        )
        self.logs = EventLoggingObserver.createWithCleanup(
            self, registration.SecondFamily.log.observer
        )
        self.addCleanup(self.second.stop)

    def requests(self):
        return [m for m, _, _ in self.sent if m.messageClass == stun.REQUEST]

    def answer(self, datagram):
        return self.second.handle(stun.decode(datagram))

    def test_waitsForTheSecret(self):
        """
        Nothing is sent while the name has no secret; once it has, a
        SECOND-FAMILY registration proven with its registration key goes
        to the server of the other family.
        """
        self.second.registered()
        self.clock.advance(60)
        self.assertEqual(self.sent, [])
        self.registrar.secret = b"s" * 16
        self.second.registered()
        [(message, address, datagram)] = self.sent
        self.assertEqual(address, SERVER6)
        self.assertTrue(messages.parseRegistration(message).secondFamily)
        self.assertTrue(
            stun.verifyIntegrity(datagram, messages.registrationKey(self.registrar.secret))
        )

    def start(self):
        self.registrar.secret = b"s" * 16
        self.second.registered()
        return self.requests()[-1]

    def test_challengeAnsweredAtOnce(self):
        """
        A cookie challenge is answered at once with the cookie.
        """
        request = self.start()
        self.assertTrue(self.answer(messages.encodeChallenge(request.transactionID, b"c" * 16)))
        again = self.requests()[-1]
        self.assertNotEqual(again.transactionID, request.transactionID)
        self.assertEqual(messages.parseRegistration(again).cookie, b"c" * 16)

    def successes(self):
        return [e for e in self.logs if e["log_format"].startswith("My public {family}")]

    def test_successLoggedWhenTheAddressChanges(self):
        """
        A success is logged with the address seen, and again only when
        that address changes.
        """
        for observed in [V6, V6, ("2001:db8::2", 6000)]:
            request = self.requests()[-1] if self.sent else self.start()
            self.assertTrue(
                self.answer(messages.encodeRegistered(request.transactionID, observed, 60))
            )
            self.clock.advance(20)
        self.assertEqual([e["family"] for e in self.successes()], ["IPv6", "IPv6"])
        self.assertEqual(self.second.publicAddress, ("2001:db8::2", 6000))

    def test_refusalWarnedOnce(self):
        """
        A refusal is warned of once, not at every interval while it lasts.
        """
        self.start()
        for _ in range(3):
            request = self.requests()[-1]
            self.assertTrue(
                self.answer(
                    messages.encodeError(
                        messages.REGISTER, request.transactionID, messages.NAME_TAKEN, "no"
                    )
                )
            )
            self.clock.advance(20)
        warned = [e for e in self.logs if e["log_format"].startswith("The stage manager at")]
        self.assertEqual(len(warned), 1)

    def test_stopLeavesNoDelayedCalls(self):
        """
        After stop, no timer remains, with a request unanswered.
        """
        self.start()
        self.second.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


ALICE6 = ("2001:db8::5", 7000)


class SecondFamilyServerTests(StageManagerTestMixin, SynchronousTestCase):
    """
    The stage manager's side of a SECOND-FAMILY registration.  The simulated
    network is IPv4, so what comes from IPv6 is handed to the stage manager
    as datagrams, and its writes to IPv6 are recorded.
    """

    def setUp(self):
        StageManagerTestMixin.setUp(self)
        self.written = []
        send = self.server._send

        def record(datagram, address):
            if ":" in address[0]:
                self.written.append((stun.decode(datagram), address, datagram))
            else:
                send(datagram, address)

        self.server._send = record
        self.alice, self.aliceTransport = self.client("203.0.113.5", 5000)
        self.register(self.aliceTransport, "alice", "bob", True)
        self.network.advance(1)

    def secret(self, recorder):
        return heldSecret([m for m, _, _ in recorder.received])

    def second(self, secret=None, cookie=None, source=ALICE6, name="alice"):
        """
        Hand the stage manager a SECOND-FAMILY registration of C{name} from
        C{source}, proven with C{secret} (alice's by default).

        @return: The datagram and the answers written to C{source}.
        """
        if secret is None:
            secret = self.secret(self.alice)
        datagram = messages.encodeRegistration(
            stun.newTransactionID(),
            messages.Registration(name, cookie=cookie, secondFamily=True),
            messages.UNPROVEN_REGISTRATION_BYTES,
            messages.registrationKey(secret),
        )
        del self.written[:]
        self.server.datagramReceived(datagram, source)
        self.network.advance(1)
        return datagram, [m for m, a, _ in self.written if a == source]

    def entry(self):
        return self.server.phonebook.lookup("alice", self.network.clock.seconds())

    def proven(self, source=ALICE6, **kwargs):
        """
        A SECOND-FAMILY registration from C{source} that answers the
        challenge with its cookie.
        """
        _, [challenge] = self.second(source=source, **kwargs)
        return self.second(source=source, cookie=challenge.get(messages.COOKIE), **kwargs)

    def test_challengeThenSuccess(self):
        """
        Without a cookie it is challenged; with the cookie it is answered
        with the address it came from and a cookie, and no secret or
        nonce: the entry's secret and address do not move, and the address
        is recorded beside them.
        """
        before = self.entry()
        secret, address = before.secret, before.address
        _, [challenge] = self.second()
        self.assertEqual(
            stun.decodeErrorCode(challenge.get(stun.ERROR_CODE))[0], messages.PROVE_ADDRESS
        )
        _, [answer] = self.second(cookie=challenge.get(messages.COOKIE))
        self.assertEqual((answer.method, answer.messageClass), (messages.REGISTER, stun.SUCCESS))
        registered = messages.parseRegistered(answer)
        self.assertEqual(registered.observed, ALICE6)
        self.assertIsNotNone(registered.cookie)
        self.assertIsNone(answer.get(messages.NAME_NONCE))
        self.assertIsNone(answer.get(messages.NAME_SECRET))
        entry = self.entry()
        self.assertEqual((entry.secret, entry.address), (secret, address))
        self.assertEqual(entry.secondAddress(self.network.clock.seconds()), ALICE6)
        self.assertEqual(self.server.stats["secondFamilies"], 1)

    def test_withoutProofRefused(self):
        """
        One proven with another secret than the name's is refused with 403,
        and records nothing.
        """
        _, [answer] = self.proven(secret=b"x" * 16)
        self.assertEqual(stun.decodeErrorCode(answer.get(stun.ERROR_CODE))[0], messages.NAME_TAKEN)
        self.assertIsNone(self.entry().secondAddress(self.network.clock.seconds()))
        self.assertEqual(self.server.stats["secondFamiliesRefused"], 1)
        self.assertEqual(self.server.stats["secondFamilies"], 0)

    def test_sameFamilyRefused(self):
        """
        One from the family of the entry's address, an IPv4-mapped address
        counting as IPv4, is refused with 400, and records nothing.
        """
        _, [answer] = self.proven(source=("::ffff:203.0.113.9", 7000))
        self.assertEqual(stun.decodeErrorCode(answer.get(stun.ERROR_CODE))[0], messages.BAD_REQUEST)
        self.assertIsNone(self.entry().secondAddress(self.network.clock.seconds()))

    def test_spoofedGetsOnlyAChallenge(self):
        """
        One from a victim's address, without the cookie of that address,
        gets only the challenge, no larger than the request, and changes
        nothing.
        """
        before = self.entry()
        secret, address = before.secret, before.address
        victim = ("2001:db8::66", 53)
        datagram, answers = self.second(secret=b"x" * 16, source=victim)
        [challenge] = answers
        self.assertEqual(
            stun.decodeErrorCode(challenge.get(stun.ERROR_CODE))[0], messages.PROVE_ADDRESS
        )
        self.assertLessEqual(len(self.written[0][2]), len(datagram))
        entry = self.entry()
        self.assertEqual((entry.secret, entry.address), (secret, address))
        self.assertIsNone(entry.secondAddress(self.network.clock.seconds()))

    def introductionsTo(self, recorder):
        return [
            messages.parseIntroduction(m) for m in recorder.messages(messages.INTRODUCE, stun.REQUEST)
        ]

    def test_introductionCarriesIt(self):
        """
        An introduction of alice after her second family carries it in
        PEER-OTHER-ADDRESS.
        """
        self.proven()
        bob, bobTransport = self.client("203.0.113.6", 5000)
        self.register(bobTransport, "bob", "alice", True)
        self.network.advance(1)
        [introduction] = {i.name: i for i in self.introductionsTo(bob)}.values()
        self.assertEqual(introduction.otherAddress, ALICE6)

    def candidatesTo(self, recorder):
        return {
            m.transactionID: messages.parseCandidate(m)
            for m in recorder.messages(messages.CANDIDATE, stun.REQUEST)
        }

    def test_forwardedAfterTheIntroductionOnce(self):
        """
        A second address registered after alice's introduction goes to bob
        in a CANDIDATE of the other family, once: not again at a refresh
        that gives the same address.
        """
        bob, bobTransport = self.client("203.0.113.6", 5000)
        self.register(bobTransport, "bob", "alice", True)
        self.network.advance(1)
        self.assertIsNone(self.introductionsTo(bob)[0].otherAddress)
        _, [answer] = self.proven()
        self.second(cookie=answer.get(messages.COOKIE))
        self.assertEqual(self.server.stats["secondFamilies"], 2)
        candidates = list(self.candidatesTo(bob).values())
        self.assertEqual(
            candidates, [messages.RelayCandidate("alice", ALICE6, other=True)]
        )
        self.assertEqual(self.server.stats["candidates"], 1)

    def test_peerCandidateOfOtherFamilyRefused(self):
        """
        A peer's CANDIDATE naming an address of its other family is refused
        and not forwarded: only an address the stage manager saw is.
        """
        bob, bobTransport = self.client("203.0.113.6", 5000)
        self.register(bobTransport, "bob", "alice", True)
        self.network.advance(1)
        txid = stun.newTransactionID()
        self.aliceTransport.write(
            messages.encodeCandidate(
                txid,
                messages.RelayCandidate("alice", ALICE6, "bob", other=True),
                messages.introductionKey(self.secret(self.alice)),
            ),
            SERVER,
        )
        self.network.advance(1)
        [refusal] = [
            m for m in self.alice.messages(messages.CANDIDATE, stun.ERROR) if m.transactionID == txid
        ]
        self.assertEqual(stun.decodeErrorCode(refusal.get(stun.ERROR_CODE))[0], messages.BAD_REQUEST)
        self.assertEqual(self.candidatesTo(bob), {})


class _Port:
    """
    A transport on C{::} that records what is written to it.
    """

    def __init__(self):
        self.written = []

    def getHost(self):
        return IPv6Address("UDP", "::", 5000)

    def write(self, datagram, address):
        self.written.append((datagram, address))


class DualStackPeerTests(SynchronousTestCase):
    """
    A dual-stack L{PeerProtocol}'s one socket on C{::}: IPv4 written in
    its mapped form, read as plain IPv4.
    """

    def test_mappedAtTheSocket(self):
        """
        The registration goes to the stage manager's IPv4 address in its
        IPv4-mapped form and the other family's to its IPv6 address; a
        challenge from the mapped address is the stage manager's, and is
        answered there at once.
        """
        clock = Clock()
        peer = PeerProtocol(
            clock, ("192.0.2.10", 8080), "alice", "bob",
            secondServer=("2001:db8:5::10", 8080), discoverNAT=False,
        )
        port = _Port()
        peer.makeConnection(port)
        self.assertTrue(peer.dualStack)
        self.assertEqual(
            sorted(address for _, address in port.written),
            [("2001:db8:5::10", 8080), ("::ffff:192.0.2.10", 8080)],
        )
        [registration] = [
            stun.decode(d) for d, address in port.written if address == ("::ffff:192.0.2.10", 8080)
        ]
        del port.written[:]
        peer.datagramReceived(
            messages.encodeChallenge(registration.transactionID, bytes(16)),
            ("::ffff:192.0.2.10", 8080, 0, 0),
        )
        [(again, address)] = port.written
        self.assertEqual(address, ("::ffff:192.0.2.10", 8080))
        self.assertEqual(stun.decode(again).get(messages.COOKIE), bytes(16))
        peer.doStop()
        self.assertEqual([c for c in clock.getDelayedCalls() if c.active()], [])
