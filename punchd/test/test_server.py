"""
Tests for L{punchd.server}, the stage manager, over L{punchd.testing}'s
simulated network.
"""

from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import messages, stun
from punchd.discovery import BehaviourDiscovery
from punchd.interfaces import IPhonebook
from punchd.phonebook import Phonebook
from punchd.server import INTRODUCTION_RETRIES, StageManagerProtocol
from punchd.test.helpers import SERVER, Recorder, heldSecret, register, registration
from punchd.testing import Network, portRestrictedCone


class StageManagerTestMixin:
    def setUp(self):
        self.network = Network(latency=0.125)
        self.serverHost = self.network.host(SERVER[0])
        self.keys = iter(bytes([i]) * 16 for i in range(1, 100))
        self.server = StageManagerProtocol(
            self.serverHost,
            Phonebook(maxEntries=3, ttl=60),
            randomBytes=lambda n: next(self.keys)[:n],
        )
        self.port = self.serverHost.listenUDP(SERVER[1], self.server)
        self.nat = self.network.nat("198.51.100.1", **portRestrictedCone())
        self.events = EventLoggingObserver.createWithCleanup(self, self.server.log.observer)

    def client(self, address, port, behind=None):
        host = self.network.host(address, behind=behind)
        recorder = Recorder()
        transport = host.listenUDP(port, recorder)
        return recorder, transport

    def register(self, transport, *args, **kwargs):
        register(self.server, transport, *args, **kwargs)

    def logged(self, text):
        return [e for e in self.events if text in e.get("log_format", "")]


class RegistrationTests(StageManagerTestMixin, SynchronousTestCase):
    """
    Registration and the phonebook.
    """

    def test_answeredWithPublicAddress(self):
        """
        A registration is answered with the address and port its NAT showed
        the stage manager, and the lifetime of a registration.
        """
        alice, transport = self.client("10.0.0.2", 5000, behind=self.nat)
        self.register(transport, "alice", "bob")
        self.network.advance(1)
        [answer] = alice.messages(messages.REGISTER, stun.SUCCESS)
        registered = messages.parseRegistered(answer)
        self.assertEqual(registered.observed, ("198.51.100.1", 5000))
        self.assertEqual(registered.lifetime, 60)
        self.assertEqual(registered.peerStates, ())

    def test_phonebookEntry(self):
        """
        The phonebook holds the public mapping, the local addresses, the
        wanted name and the time of the registration.
        """
        _, transport = self.client("10.0.0.2", 5000, behind=self.nat)
        self.register(transport, "alice", "bob", local=[("10.0.0.2", 5000)])
        self.network.advance(1)
        entry = self.server.phonebook.lookup("alice", self.network.clock.seconds())
        self.assertEqual(
            (entry.address, entry.localAddresses, entry.wants, entry.lastSeen),
            (("198.51.100.1", 5000), (("10.0.0.2", 5000),), ("bob",), 0.375),
        )
        [event] = self.logged("registered from")
        self.assertEqual(
            (event["name"], event["address"], event["localAddresses"], event["wants"]),
            ("alice", "198.51.100.1:5000", "10.0.0.2:5000", "bob"),
        )

    def secretOf(self, recorder):
        """
        The name secret C{recorder} holds after the registration answers it
        got.
        """
        return heldSecret(recorder.messages(messages.REGISTER, stun.SUCCESS))

    def test_updatedInPlace(self):
        """
        A known name registering from a new address with its secret (a NAT
        rebinding) replaces the old address, and the change is logged with
        both.
        """
        recorder, first = self.client("203.0.113.5", 5000)
        _, second = self.client("203.0.113.6", 6000)
        self.register(first, "alice")
        self.network.advance(1)
        self.register(second, "alice", secret=self.secretOf(recorder))
        self.network.advance(1)
        self.assertEqual(len(self.server.phonebook), 1)
        self.assertEqual(
            self.server.phonebook.lookup("alice", 2).address, ("203.0.113.6", 6000)
        )
        [event] = self.logged("re-registered")
        self.assertEqual(event["previousAddress"], "203.0.113.5:5000")

    def test_expiry(self):
        """
        An entry not refreshed within the TTL is swept away and the expiry
        logged.
        """
        _, transport = self.client("203.0.113.5", 5000)
        self.register(transport, "alice")
        self.network.advance(60)
        self.assertEqual(len(self.server.phonebook), 1)
        self.network.advance(1)
        self.assertEqual(len(self.server.phonebook), 0)
        self.assertEqual(self.server.stats["expiries"], 1)
        [event] = self.logged("expired")
        self.assertEqual(event["name"], "alice")

    def test_capacity(self):
        """
        When the phonebook is full, a new name is refused with 508 and
        counted, no entry is forgotten, and known names still refresh.
        """
        clients = {name: self.client(f"203.0.113.{i}", 5000) for i, name in enumerate("abcd", 5)}
        for name in ("a", "b", "c", "a", "d"):
            recorder, transport = clients[name]
            self.register(transport, name, secret=self.secretOf(recorder))
            self.network.advance(1)
        self.assertEqual([e.name for e in self.server.phonebook], ["b", "c", "a"])
        [error] = clients["d"][0].messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(
            stun.decodeErrorCode(error.get(stun.ERROR_CODE)),
            (messages.PHONEBOOK_FULL, "the phonebook is full (3 names); try again later"),
        )
        self.assertEqual(
            (self.server.stats["phonebookFull"], self.server.drops.counts["phonebook full"]),
            (1, 1),
        )

    def test_unregister(self):
        """
        An C{UNREGISTER} from the registered address removes the entry and
        is answered.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        self.register(transport, "alice")
        self.network.advance(1)
        transport.write(
            messages.encodeUnregister(stun.newTransactionID(), "alice", self.secretOf(recorder)),
            SERVER,
        )
        self.network.advance(1)
        self.assertEqual(len(self.server.phonebook), 0)
        self.assertEqual(len(recorder.messages(messages.UNREGISTER, stun.SUCCESS)), 1)

    def test_unregisterWithoutSecret(self):
        """
        An C{UNREGISTER} without the name's secret is refused, even from the
        registered address, and the entry stays.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        self.register(transport, "alice")
        self.network.advance(1)
        transport.write(messages.encodeUnregister(stun.newTransactionID(), "alice"), SERVER)
        self.network.advance(1)
        self.assertEqual(len(self.server.phonebook), 1)
        [error] = recorder.messages(messages.UNREGISTER, stun.ERROR)
        self.assertEqual(stun.decodeErrorCode(error.get(stun.ERROR_CODE))[0], messages.NAME_TAKEN)

    def test_unregisterFromElsewhere(self):
        """
        An C{UNREGISTER} from another address is refused and the entry
        stays.
        """
        _, transport = self.client("203.0.113.5", 5000)
        other, otherTransport = self.client("203.0.113.6", 5000)
        self.register(transport, "alice")
        self.network.advance(1)
        otherTransport.write(messages.encodeUnregister(stun.newTransactionID(), "alice"), SERVER)
        self.network.advance(1)
        self.assertEqual(len(self.server.phonebook), 1)
        [(error, _, datagram)] = [r for r in other.received if r[0].messageClass == stun.ERROR]
        # The reason is cut short: the answer is no larger than the request.
        code, reason = stun.decodeErrorCode(error.get(stun.ERROR_CODE))
        self.assertEqual(code, 400)
        self.assertTrue("alice is not registered from this address".startswith(reason), reason)
        self.assertLessEqual(len(datagram), len(messages.encodeUnregister(b"x" * 12, "alice")))

    def test_invalidRegistration(self):
        """
        A registration that breaks a rule is answered with an error that
        says which, counted, and changes nothing.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        txid = stun.newTransactionID()
        transport.write(
            stun.encode(
                stun.Message(
                    messages.REGISTER,
                    stun.REQUEST,
                    txid,
                    ((messages.NAME, b"a b"), (stun.PADDING, bytes(100))),
                )
            ),
            SERVER,
        )
        self.network.advance(1)
        [error] = recorder.messages(messages.REGISTER, stun.ERROR)
        self.assertEqual(error.transactionID, txid)
        self.assertEqual(
            stun.decodeErrorCode(error.get(stun.ERROR_CODE)),
            (400, "name 'a b' has white space or control characters"),
        )
        self.assertEqual(len(self.server.phonebook), 0)
        self.assertEqual(self.server.drops.counts["invalid"], 1)

    def test_natBehaviourRecorded(self):
        """
        The NAT behaviour a registration reports is kept in the entry.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        transport.write(self._withBehaviour(transport, bytes((2, 2))), SERVER)
        self.network.advance(1)
        self.assertEqual(len(recorder.messages(messages.REGISTER, stun.SUCCESS)), 1)
        entry = self.server.phonebook.lookup("alice", self.network.clock.seconds())
        self.assertEqual(entry.nat, ("address-and-port-dependent",) * 2)

    def test_unknownNATBehaviourDropped(self):
        """
        A NAT behaviour this version does not know is left out of the entry
        and counted; the registration is taken all the same.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        transport.write(self._withBehaviour(transport, bytes((3, 0))), SERVER)
        self.network.advance(1)
        self.assertEqual(len(recorder.messages(messages.REGISTER, stun.SUCCESS)), 1)
        entry = self.server.phonebook.lookup("alice", self.network.clock.seconds())
        self.assertIsNone(entry.nat)
        self.assertEqual(self.server.drops.counts["unknown NAT behaviour"], 1)

    def _withBehaviour(self, transport, value):
        cookie = self.server.cookies.issue(("203.0.113.5", transport.port))
        return stun.encode(
            stun.Message(
                messages.REGISTER,
                stun.REQUEST,
                stun.newTransactionID(),
                (
                    (messages.NAME, b"alice"),
                    (messages.COOKIE, cookie),
                    (messages.NAT_BEHAVIOUR, value),
                    (stun.PADDING, bytes(40)),
                ),
            )
        )

    def test_stopLeavesNoTimers(self):
        """
        Once stopped, the stage manager leaves no delayed call behind, even
        with introductions unanswered.
        """
        _, a = self.client("203.0.113.5", 5000)
        _, b = self.client("203.0.113.6", 5000)
        self.register(a, "alice", "bob", seeking=True)
        self.register(b, "bob", "alice", seeking=True)
        self.network.advance(0.25)
        self.assertNotEqual(self.serverHost.getDelayedCalls(), [])
        self.port.stopListening()
        self.assertEqual(self.serverHost.getDelayedCalls(), [])


class BindingTests(StageManagerTestMixin, SynchronousTestCase):
    """
    Plain STUN Binding requests from any STUN client.
    """

    def test_binding(self):
        """
        A 20-byte Binding request is answered with a 32-byte response whose
        XOR-MAPPED-ADDRESS is the client's public address, and nothing else.
        """
        recorder, transport = self.client("10.0.0.2", 5000, behind=self.nat)
        txid = stun.newTransactionID()
        request = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid))
        self.assertEqual(len(request), 20)
        transport.write(request, SERVER)
        self.network.advance(1)
        [(answer, _, datagram)] = recorder.received
        self.assertEqual(len(datagram), 32)
        self.assertEqual((answer.method, answer.messageClass, answer.transactionID), (stun.BINDING, stun.SUCCESS, txid))
        self.assertEqual([t for t, _ in answer.attributes], [stun.XOR_MAPPED_ADDRESS])
        self.assertEqual(
            stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), txid),
            ("198.51.100.1", 5000),
        )

    def test_fingerprintMirrored(self):
        """
        A request with a FINGERPRINT gets one back, and the answer is still
        no more than 12 bytes larger than the request.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        request = stun.encode(
            stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID()), fingerprint=True
        )
        transport.write(request, SERVER)
        self.network.advance(1)
        [(answer, _, datagram)] = recorder.received
        self.assertIsNotNone(answer.get(stun.FINGERPRINT))
        self.assertEqual(len(datagram) - len(request), 12)

    def test_classic(self):
        """
        A classic RFC 3489 request, without the magic cookie, is answered
        with MAPPED-ADDRESS and its own 16-byte transaction id.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        txid = bytes(range(16))
        transport.write(stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid)), SERVER)
        self.network.advance(1)
        [(answer, _, datagram)] = recorder.received
        self.assertEqual(answer.transactionID, txid)
        self.assertEqual(len(datagram), 32)
        self.assertEqual(
            stun.decodeAddress(answer.get(stun.MAPPED_ADDRESS)), ("203.0.113.5", 5000)
        )


class IntroductionTests(StageManagerTestMixin, SynchronousTestCase):
    """
    Introductions.
    """

    def setUp(self):
        super().setUp()
        self.natB = self.network.nat("203.0.113.1", **portRestrictedCone())
        self.alice, self.aliceTransport = self.client("10.0.0.2", 5000, behind=self.nat)
        self.bob, self.bobTransport = self.client("10.0.0.3", 6000, behind=self.natB)

    def test_bothAtOnce(self):
        """
        When a peer seeks one that seeks it back, both receive, at the same
        moment, the other's public mapping and local addresses and the same
        punch key; the second registrant's answer says an introduction
        follows.
        """
        self.register(self.aliceTransport, "alice", "bob", True, [("10.0.0.2", 5000)])
        self.network.advance(1)
        self.assertEqual(self.alice.messages(messages.INTRODUCE, stun.REQUEST), [])
        self.register(self.bobTransport, "bob", "alice", True, [("10.0.0.3", 6000)])
        self.network.advance(0.75)
        [toAlice] = self.alice.messages(messages.INTRODUCE, stun.REQUEST)
        [toBob] = self.bob.messages(messages.INTRODUCE, stun.REQUEST)
        key = messages.parseIntroduction(toAlice).key
        self.assertEqual(
            messages.parseIntroduction(toAlice),
            messages.Introduction("bob", ("203.0.113.1", 6000), (("10.0.0.3", 6000),), key),
        )
        self.assertEqual(
            messages.parseIntroduction(toBob),
            messages.Introduction("alice", ("198.51.100.1", 5000), (("10.0.0.2", 5000),), key),
        )
        arrivals = [
            d.time for d in self.network.delivered()
            if stun.decode(d.data).method == messages.INTRODUCE
        ]
        self.assertEqual(arrivals, [1.75, 1.75])
        [bobAnswer] = self.bob.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(bobAnswer).peerStates, (messages.PEER_INTRODUCED,))
        [event] = [e for e in self.events if "Introduced" in e["log_format"]]
        self.assertEqual((event["a"], event["b"]), ("bob", "alice"))

    def test_unprovenOnlyChallenged(self):
        """
        A registration without a cookie, padded as a peer pads it, from a
        peer that a waiting peer seeks, is answered with a cookie challenge
        alone, no larger than itself: nothing is recorded, nobody is
        introduced, and the phonebook is not even consulted.
        """
        self.register(self.aliceTransport, "alice", "bob", True)
        self.network.advance(1)
        consulted = []
        for method in ("lookup", "register"):
            original = getattr(self.server.phonebook, method)

            def spy(*args, _original=original, _method=method):
                consulted.append(_method)
                return _original(*args)

            setattr(self.server.phonebook, method, spy)
        request = messages.encodeRegistration(
            stun.newTransactionID(),
            messages.Registration("bob", ("alice",), (("10.0.0.3", 6000),), ("alice",)),
            messages.UNPROVEN_REGISTRATION_BYTES,
        )
        self.bobTransport.write(request, SERVER)
        self.network.advance(5)
        [(challenge, _, datagram)] = self.bob.received
        self.assertEqual(
            stun.decodeErrorCode(challenge.get(stun.ERROR_CODE))[0], messages.PROVE_ADDRESS
        )
        self.assertEqual(len(challenge.get(messages.COOKIE)), 16)
        self.assertLessEqual(len(datagram), len(request))
        self.assertEqual(consulted, [])
        self.assertEqual([e.name for e in self.server.phonebook], ["alice"])
        self.assertEqual(self.alice.messages(messages.INTRODUCE, stun.REQUEST), [])
        self.assertEqual(self.server.stats["introductions"], 0)
        self.assertEqual(self.server.stats["challenges"], 1)

    def test_absent(self):
        """
        A peer seeking one not registered is told so, and nobody is
        introduced.
        """
        self.register(self.aliceTransport, "alice", "bob", True)
        self.network.advance(1)
        [answer] = self.alice.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_WAITING,))
        self.assertEqual(self.server.stats["introductions"], 0)

    def test_consent(self):
        """
        A peer seeking one that seeks somebody else is told no more than if
        it were absent, and neither learns anything of the other.
        """
        self.register(self.bobTransport, "bob", "carol", True)
        self.network.advance(1)
        self.register(self.aliceTransport, "alice", "bob", True)
        self.network.advance(1)
        [answer] = self.alice.messages(messages.REGISTER, stun.SUCCESS)
        self.assertEqual(messages.parseRegistered(answer).peerStates, (messages.PEER_WAITING,))
        carol, carolTransport = self.client("203.0.113.9", 5000)
        self.register(carolTransport, "carol", "dave", True)
        self.network.advance(1)
        [absent] = carol.messages(messages.REGISTER, stun.SUCCESS)
        said = lambda m: [
            (t, v) for t, v in m.attributes
            if t not in (
                stun.XOR_MAPPED_ADDRESS,
                messages.COOKIE,
                messages.NAME_SECRET,
                messages.REFRESH_HANDLE,
                stun.FINGERPRINT,
            )
        ]
        self.assertEqual(said(answer), said(absent))
        self.assertEqual(self.alice.messages(messages.INTRODUCE, stun.REQUEST), [])
        self.assertEqual(self.bob.messages(messages.INTRODUCE, stun.REQUEST), [])

    def test_notSeeking(self):
        """
        A refresh from a peer that has its path does not introduce anybody.
        """
        self.register(self.bobTransport, "bob", "alice", True)
        self.register(self.aliceTransport, "alice", "bob", False)
        self.network.advance(1)
        self.assertEqual(self.server.stats["introductions"], 0)

    def test_retransmittedUntilAnswered(self):
        """
        An unanswered introduction is sent again with growing delays, then
        given up with a warning; an answered one is not sent again.
        """
        self.bob.datagramReceived = lambda data, address: None  # bob never answers
        original = self.alice.datagramReceived

        def answer(data, address):
            original(data, address)
            message = stun.decode(data)
            if message.method == messages.INTRODUCE:
                self.aliceTransport.write(
                    messages.encodeSuccess(messages.INTRODUCE, message.transactionID), address
                )

        self.alice.datagramReceived = answer
        self.register(self.aliceTransport, "alice", "bob", True)
        self.register(self.bobTransport, "bob", "alice", True)
        self.network.advance(30)
        def introductionsTo(address):
            return [
                d.sentAt for d in self.network.traffic
                if d.source == SERVER and d.destination[0] == address
                and stun.decode(d.data).method == messages.INTRODUCE
            ]

        toBob = introductionsTo("203.0.113.1")
        toAlice = introductionsTo("198.51.100.1")
        start = toBob[0]
        self.assertEqual(
            [t - start for t in toBob],
            [sum(INTRODUCTION_RETRIES[:i]) for i in range(len(INTRODUCTION_RETRIES))],
        )
        ack = min(
            d.time for d in self.network.delivered()
            if d.destination == SERVER and stun.decode(d.data).method == messages.INTRODUCE
        )
        self.assertTrue(toAlice and max(toAlice) < ack, (toAlice, ack))
        self.assertEqual(len(self.logged("never acknowledged")), 1)


class MalformedTests(StageManagerTestMixin, SynchronousTestCase):
    """
    Datagrams that are not what they should be.
    """

    def test_droppedAndCounted(self):
        """
        Every kind of malformed or unexpected datagram is dropped without an
        answer, counted, and leaves the phonebook as it was.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        self.register(transport, "alice")
        self.network.advance(1)
        before = [(e.name, e.address) for e in self.server.phonebook]
        txid = stun.newTransactionID()
        valid = registration("mallory")
        bad = [
            b"",
            b"\x00",
            b"alice",
            b"\xff" * 20,
            valid[:-1],
            valid[:20],
            valid[:-4] + b"\x00\x00\x00\x00",
            stun.encode(stun.Message(messages.REGISTER, stun.INDICATION, txid)),
            stun.encode(stun.Message(messages.REGISTER, stun.SUCCESS, txid)),
            stun.encode(stun.Message(0x0FF, stun.REQUEST, txid)),
            stun.encode(stun.Message(messages.INTRODUCE, stun.SUCCESS, txid)),
        ]
        for datagram in bad:
            transport.write(datagram, SERVER)
        self.network.advance(1)
        self.assertEqual(len(recorder.received), 1)
        self.assertEqual(sum(self.server.drops.counts.values()), len(bad))
        self.assertEqual([(e.name, e.address) for e in self.server.phonebook], before)
        warnings = [e for e in self.events if e["log_format"].startswith("Dropped")]
        self.assertEqual(len(warnings), 1, "warnings are rate-limited")


class CounterTests(StageManagerTestMixin, SynchronousTestCase):
    """
    What the stage manager counts, for its metrics.
    """

    def test_bothWays(self):
        """
        Every byte of every datagram received and sent is counted, bad ones
        included.
        """
        recorder, transport = self.client("203.0.113.5", 5000)
        request = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID()))
        transport.write(request, SERVER)
        transport.write(b"junk", SERVER)
        self.network.advance(1)
        [(_, _, answer)] = recorder.received
        self.assertEqual(
            (self.server.stats["bytesReceived"], self.server.stats["bytesSent"]),
            (len(request) + 4, len(answer)),
        )

    def test_retransmissions(self):
        """
        Each retransmission of an introduction counts again.
        """
        alice, aliceTransport = self.client("203.0.113.5", 5000)
        bob, bobTransport = self.client("203.0.113.6", 6000)
        self.register(aliceTransport, "alice", "bob", seeking=True)
        self.register(bobTransport, "bob", "alice", seeking=True)
        self.network.advance(sum(INTRODUCTION_RETRIES) + 1)
        sent = [d for r in (alice, bob) for _, _, d in r.received]
        self.assertEqual(len(sent), 2 + 2 * len(INTRODUCTION_RETRIES))
        self.assertEqual(self.server.stats["bytesSent"], sum(map(len, sent)))

    def discoveryServer(self):
        discovery = BehaviourDiscovery(("192.0.2.10", 9000), 9001)
        server = StageManagerProtocol(self.serverHost, Phonebook(10, 60), discovery=discovery)
        self.serverHost.listenUDP(9000, server)
        for _, (_, port), protocol in discovery.alternateSockets(server.drops):
            self.serverHost.listenUDP(port, protocol)
        return server

    def test_discoveryAnswers(self):
        """
        NAT behaviour discovery answers that leave from the stage manager's
        port are counted too.
        """
        server = self.discoveryServer()
        recorder, transport = self.client("203.0.113.5", 5000)
        request = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID()))
        transport.write(request, ("192.0.2.10", 9000))
        self.network.advance(1)
        [(_, source, answer)] = recorder.received
        self.assertEqual(source, ("192.0.2.10", 9000))
        self.assertEqual(server.stats["bytesSent"], len(answer))

    def test_bindingAnswers(self):
        """
        Binding requests are counted once answered; one too malformed to
        answer is counted as dropped instead.
        """
        server = self.discoveryServer()
        recorder, transport = self.client("203.0.113.5", 5000)
        txid = stun.newTransactionID()
        badChange = ((stun.CHANGE_REQUEST, b"\x00"),)
        transport.write(
            stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid)), ("192.0.2.10", 9000)
        )
        transport.write(
            stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid, badChange)),
            ("192.0.2.10", 9000),
        )
        self.network.advance(1)
        self.assertEqual(len(recorder.received), 1)
        self.assertEqual((server.stats["bindings"], server.drops.counts["malformed"]), (1, 1))


class PrivacyTests(SynchronousTestCase):
    """
    A stage manager that keeps peers' addresses out of its log.
    """

    def exercise(self, logAddresses):
        """
        Register, re-register, introduce, drop, unregister, retransmit and
        expire, on a stage manager that logs addresses or not.

        @return: The stage manager's log events, and their text.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        network = Network(latency=0.125)
        host = network.host(SERVER[0])
        server = StageManagerProtocol(host, Phonebook(10, 60), logAddresses=logAddresses)
        host.listenUDP(SERVER[1], server)
        nat = network.nat("198.51.100.1", **portRestrictedCone())
        alice = network.host("10.0.0.2", behind=nat).listenUDP(5000, DatagramProtocol())
        bob = network.host("203.0.113.6").listenUDP(6000, DatagramProtocol())
        register(server, alice, "alice", "carol", local=[("10.0.0.2", 5000)])
        network.advance(1)
        secret = server.phonebook.lookup("alice", network.clock.seconds()).secret
        register(server, alice, "alice", "bob", seeking=True, secret=secret)
        register(server, bob, "bob", "alice", seeking=True)
        bob.write(b"junk", SERVER)
        network.advance(0.5)
        secret = server.phonebook.lookup("alice", network.clock.seconds()).secret
        alice.write(messages.encodeUnregister(stun.newTransactionID(), "alice", secret), SERVER)
        network.advance(120)
        ours = [
            e for e in events if e["log_namespace"].startswith(("punchd.server", "punchd.drops"))
        ]
        return ours, [formatEvent(e) for e in ours]

    def test_hidden(self):
        """
        No log event has a peer's address, in its text or in any field;
        each says who, and that the address is hidden.
        """
        events, text = self.exercise(logAddresses=False)
        peers = ("10.0.0.2", "198.51.100.1", "203.0.113.6")
        self.assertEqual(
            [t for t in text + [repr(e) for e in events] if any(p in t for p in peers)], []
        )
        for said in (
            "alice registered from (hidden) (local: (hidden))",
            "alice re-registered from (hidden) (local: (hidden)), looking for bob; it was at (hidden)",
            "Introduced alice at (hidden) and bob at (hidden)",
            "Dropped a datagram from (hidden)",
            "alice at (hidden) left",
            "bob at (hidden) never acknowledged",
            "bob at (hidden) expired",
        ):
            self.assertEqual(len([t for t in text if said in t]), 1, said)
        self.assertIn("Stage manager listening on 192.0.2.10:8080", text[0])

    def test_shownByDefault(self):
        """
        By default the log shows peers' addresses.
        """
        _, text = self.exercise(logAddresses=True)
        self.assertIn("Introduced alice at 198.51.100.1:5000 and bob at 203.0.113.6:6000", text)


@implementer(IPhonebook)
class DeferredPhonebook:
    """
    A phonebook that answers later, as one over the network does: each
    answer of an in-memory L{Phonebook} comes in a L{Deferred} fired when
    the test says.
    """

    def __init__(self, maxEntries, ttl):
        self._book = Phonebook(maxEntries, ttl)
        self.maxEntries, self.ttl = maxEntries, ttl
        self.waiting = []

    def __len__(self):
        return len(self._book)

    def _later(self, result):
        d = Deferred()
        self.waiting.append((d, result))
        return d

    def answerAll(self):
        while self.waiting:
            d, result = self.waiting.pop(0)
            d.callback(result)

    def lookup(self, name, now):
        return self._later(self._book.lookup(name, now))

    def register(self, *args, **kwargs):
        return self._later(self._book.register(*args, **kwargs))

    def refresh(self, name, address, now):
        return self._later(self._book.refresh(name, address, now))

    def alsoAt(self, name, address, now):
        return self._later(self._book.alsoAt(name, address, now))

    def remove(self, name):
        return self._later(self._book.remove(name))

    def expire(self, now):
        return self._later(self._book.expire(now))


class DeferredPhonebookTests(SynchronousTestCase):
    """
    The stage manager over a phonebook whose every answer is a L{Deferred}.
    """

    def setUp(self):
        self.network = Network(latency=0.125)
        self.serverHost = self.network.host(SERVER[0])
        self.phonebook = DeferredPhonebook(10, 60)
        verifyObject(IPhonebook, self.phonebook)
        self.server = StageManagerProtocol(self.serverHost, self.phonebook)
        self.serverHost.listenUDP(SERVER[1], self.server)

    def client(self, address, port):
        recorder = Recorder()
        transport = self.network.host(address).listenUDP(port, recorder)
        return recorder, transport

    def step(self, seconds):
        for _ in range(int(seconds / 0.125)):
            self.network.advance(0.125)
            self.phonebook.answerAll()

    def test_introducesWhenAnswered(self):
        """
        Registrations are answered, and two peers that seek each other are
        introduced, once the phonebook's answers arrive.
        """
        alice, aliceTransport = self.client("198.51.100.1", 5000)
        bob, bobTransport = self.client("203.0.113.1", 6000)
        register(self.server, aliceTransport, "alice", "bob", True)
        self.network.advance(0.125)
        self.assertEqual(alice.messages(messages.REGISTER, stun.SUCCESS), [])
        self.step(1)
        register(self.server, bobTransport, "bob", "alice", True)
        self.step(1)
        # Unacknowledged, so retransmitted: the first of each.
        toAlice = alice.messages(messages.INTRODUCE, stun.REQUEST)[0]
        toBob = bob.messages(messages.INTRODUCE, stun.REQUEST)[0]
        self.assertEqual(messages.parseIntroduction(toAlice).name, "bob")
        self.assertEqual(messages.parseIntroduction(toBob).address, ("198.51.100.1", 5000))

    def refreshOnce(self, transport, recorder, counter=1):
        """
        Send a compact refresh with the handle and secret of the last
        registration answer C{recorder} got.
        """
        answer = messages.parseRegistered(recorder.messages(messages.REGISTER, stun.SUCCESS)[-1])
        txid = stun.newTransactionID()
        transport.write(
            messages.encodeRefresh(
                txid, answer.handle, counter, messages.refreshKey(answer.secret)
            ),
            SERVER,
        )
        return txid

    def test_refreshAnsweredWhenKept(self):
        """
        A compact refresh is answered once the phonebook says it kept the
        entry, and not before.
        """
        alice, aliceTransport = self.client("198.51.100.1", 5000)
        register(self.server, aliceTransport, "alice")
        self.step(1)
        txid = self.refreshOnce(aliceTransport, alice)
        self.network.advance(0.5)
        self.assertEqual(len(self.phonebook.waiting), 1)
        self.assertEqual(alice.messages(messages.REFRESH, stun.SUCCESS), [])
        self.step(1)
        [answer] = alice.messages(messages.REFRESH, stun.SUCCESS)
        self.assertEqual(answer.transactionID, txid)
        self.assertEqual(self.server.stats["refreshes"], 1)

    def test_lateRefusalKeepsNewerHandle(self):
        """
        A refresh the phonebook refuses after the name registered again
        tells the peer to register in full, and leaves the handle the new
        registration got good.
        """
        alice, aliceTransport = self.client("198.51.100.1", 5000)
        register(self.server, aliceTransport, "alice")
        self.step(1)
        self.phonebook._book.remove("alice")
        self.refreshOnce(aliceTransport, alice)
        self.network.advance(0.5)
        [late] = self.phonebook.waiting
        del self.phonebook.waiting[:]
        register(self.server, aliceTransport, "alice")
        self.step(1)
        late[0].callback(late[1])
        self.step(1)
        self.assertEqual(len(alice.messages(messages.REFRESH, stun.ERROR)), 1)
        self.refreshOnce(aliceTransport, alice)
        self.step(1)
        self.assertEqual(len(alice.messages(messages.REFRESH, stun.SUCCESS)), 1)

    def test_takeoverRefusedWhenAnswered(self):
        """
        A registration of a held name from elsewhere is refused once the
        phonebook's answer shows who holds it; an unregistration that
        breaks a rule is refused the same way.
        """
        _, aliceTransport = self.client("198.51.100.1", 5000)
        mallory, malloryTransport = self.client("192.0.2.66", 7000)
        register(self.server, aliceTransport, "alice")
        self.step(1)
        register(self.server, malloryTransport, "alice")
        malloryTransport.write(messages.encodeUnregister(stun.newTransactionID(), "alice"), SERVER)
        self.step(1)
        refusals = mallory.messages(messages.REGISTER, stun.ERROR) + mallory.messages(
            messages.UNREGISTER, stun.ERROR
        )
        self.assertEqual(len(refusals), 2)
        self.assertEqual(self.server.stats["takeoversRefused"], 1)
        self.assertEqual(self.server.drops.counts["invalid"], 1)
