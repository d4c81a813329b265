"""
The stage manager's side of relaying: TURN credentials in introductions,
and relayed candidates forwarded between introduced peers.
"""

import base64
import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER, Recorder, register
from punchd.testing import Network, portRestrictedCone
from punchd.turn import RelayOffer

TURN = ("192.0.2.11", 3478)
SECRET = b"the turn secret"
RELAYED = ("192.0.2.11", 49152)


class RelayOfferTests(SynchronousTestCase):
    def setUp(self):
        self.network = Network(latency=0.125)
        self.network.clock.advance(1_700_000_000)
        host = self.network.host(SERVER[0])
        self.server = StageManagerProtocol(
            host,
            Phonebook(maxEntries=10, ttl=60),
            turn=RelayOffer(TURN, SECRET, "punchd", lifetime=600),
        )
        host.listenUDP(SERVER[1], self.server)
        self.alice, self.aliceTransport = self.client("10.0.0.2", 5000, "198.51.100.1")
        self.bob, self.bobTransport = self.client("10.0.0.3", 6000, "203.0.113.1")

    def client(self, address, port, public):
        nat = self.network.nat(public, **portRestrictedCone())
        host = self.network.host(address, behind=nat)
        recorder = Recorder()
        return recorder, host.listenUDP(port, recorder)

    def introduce(self):
        register(self.server, self.aliceTransport, "alice", "bob", True)
        self.network.advance(1)
        register(self.server, self.bobTransport, "bob", "alice", True)
        self.network.advance(1)
        return [
            (r.messages(messages.INTRODUCE, stun.REQUEST)[0], r.received)
            for r in (self.alice, self.bob)
        ]

    def secret(self, recorder):
        answer = recorder.messages(messages.REGISTER, stun.SUCCESS)[-1]
        return messages.parseRegistered(answer).secret

    def test_credentialsInIntroduction(self):
        """
        Each introduced peer gets the TURN server, the realm and REST-API
        credentials of its own name: EXPIRY:NAME, and the base64 of
        HMAC-SHA1 of the secret over it.
        """
        (toAlice, _), (toBob, _) = self.introduce()
        now = int(self.network.clock.seconds())
        for message, name in ((toAlice, "alice"), (toBob, "bob")):
            turn = messages.parseIntroduction(message).turn
            self.assertEqual((turn.server, turn.realm), (TURN, "punchd"))
            expiry, _, named = turn.username.partition(":")
            self.assertEqual(named, name)
            self.assertTrue(now <= int(expiry) <= now + 600)
            self.assertEqual(
                turn.password,
                base64.b64encode(
                    hmac.new(SECRET, turn.username.encode(), hashlib.sha1).digest()
                ).decode(),
            )

    def sendCandidate(self, transport, recorder, name, peer, key=None, nat=None):
        txid = stun.newTransactionID()
        if key is None:
            key = messages.introductionKey(self.secret(recorder))
        transport.write(
            messages.encodeCandidate(
                txid, messages.RelayCandidate(name, RELAYED, peer, nat), key
            ),
            SERVER,
        )
        self.network.advance(1)
        return txid

    def test_candidateForwarded(self):
        """
        A relayed candidate from alice, signed with her introduction key, is
        acknowledged and forwarded to bob, signed with his.
        """
        self.introduce()
        txid = self.sendCandidate(
            self.aliceTransport, self.alice, "alice", "bob",
            nat=("address-and-port-dependent", "address-and-port-dependent"),
        )
        [ack] = self.alice.messages(messages.CANDIDATE, stun.SUCCESS)
        self.assertEqual(ack.transactionID, txid)
        [(message, datagram)] = [
            (m, d) for m, _, d in self.bob.received
            if (m.method, m.messageClass) == (messages.CANDIDATE, stun.REQUEST)
        ]
        self.assertTrue(
            stun.verifyIntegrity(datagram, messages.introductionKey(self.secret(self.bob)))
        )
        self.assertEqual(
            messages.parseCandidate(message),
            messages.RelayCandidate(
                "alice", RELAYED, None,
                ("address-and-port-dependent", "address-and-port-dependent"),
            ),
        )

    def test_forwardRetransmitted(self):
        """
        The forwarded candidate is sent again until bob acknowledges it.
        """
        self.introduce()
        self.sendCandidate(self.aliceTransport, self.alice, "alice", "bob")
        self.network.advance(1)
        forwarded = self.bob.messages(messages.CANDIDATE, stun.REQUEST)
        self.assertGreater(len(forwarded), 1)
        self.bobTransport.write(
            messages.encodeSuccess(messages.CANDIDATE, forwarded[-1].transactionID), SERVER
        )
        self.network.advance(0.5)
        count = len(self.bob.messages(messages.CANDIDATE, stun.REQUEST))
        self.network.advance(10)
        self.assertEqual(len(self.bob.messages(messages.CANDIDATE, stun.REQUEST)), count)

    def test_unsignedDropped(self):
        """
        A candidate not signed with the sender's introduction key gets no
        answer and goes nowhere.
        """
        self.introduce()
        self.sendCandidate(self.aliceTransport, self.alice, "alice", "bob", key=b"k" * 16)
        self.assertEqual(self.alice.messages(messages.CANDIDATE, stun.SUCCESS), [])
        self.assertEqual(self.bob.messages(messages.CANDIDATE, stun.REQUEST), [])
        self.assertEqual(self.server.drops.counts["unauthenticated candidate"], 1)

    def test_notAContact(self):
        """
        A candidate for a peer the sender does not want is refused.
        """
        self.introduce()
        self.sendCandidate(self.aliceTransport, self.alice, "alice", "carol")
        [refusal] = self.alice.messages(messages.CANDIDATE, stun.ERROR)
        self.assertIn(b"carol", refusal.get(stun.ERROR_CODE))
        self.assertEqual(self.bob.messages(messages.CANDIDATE, stun.REQUEST), [])


class NoRelayTests(SynchronousTestCase):
    def test_noCredentials(self):
        """
        Without a relay offer, an introduction carries no TURN attributes.
        """
        introduction = messages.Introduction("bob", ("203.0.113.1", 6000), (), b"k" * 16)
        message = stun.decode(messages.encodeIntroduction(bytes(12), introduction, b"x" * 16))
        self.assertIsNone(message.get(messages.TURN_SERVER))
        self.assertEqual(messages.parseIntroduction(message), introduction)

    def test_credentialsWithoutPassword(self):
        """
        A TURN-SERVER without the credentials is an invalid introduction.
        """
        introduction = messages.Introduction(
            "bob", ("203.0.113.1", 6000), (), b"k" * 16,
            messages.TurnCredentials(TURN, "1:bob", "pw"),
        )
        message = stun.decode(messages.encodeIntroduction(bytes(12), introduction, b"x" * 16))
        self.assertEqual(messages.parseIntroduction(message), introduction)
        stripped = stun.Message(
            message.method, message.messageClass, message.transactionID,
            tuple((t, v) for t, v in message.attributes if t != messages.TURN_PASSWORD),
        )
        self.assertRaises(messages.InvalidMessage, messages.parseIntroduction, stripped)
