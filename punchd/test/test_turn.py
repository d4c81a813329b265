"""
Tests for L{punchd.turn}, with a scripted TURN server: the paths a real
coturn cannot be made to take on demand (a stale nonce, a refresh refused,
answers that are not the server's), and the timers, on a L{Clock}.  The
main tests run against coturn itself, in C{tests/test_turn.py}.
"""

import base64
import hashlib
import hmac
import struct

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd import stun, turn
from punchd.transactions import TransactionTimeout

SERVER = ("192.0.2.11", 3478)
RELAYED = ("192.0.2.11", 49152)
MAPPED = ("198.51.100.1", 5000)
PEER = ("203.0.113.1", 6000)
USERNAME = "1700000000:alice"
PASSWORD = "p4ss"
REALM = "punchd"
KEY = turn.longTermKey(USERNAME, REALM, PASSWORD)


def _error(request, code, reason, nonce=b"n1", realm=True):
    attributes = [(stun.ERROR_CODE, stun.encodeErrorCode(code, reason))]
    if nonce is not None:
        attributes.append((stun.NONCE, nonce))
    if realm:
        attributes.append((stun.REALM, REALM.encode()))
    return stun.encode(
        stun.Message(request.method, stun.ERROR, request.transactionID, tuple(attributes)),
        fingerprint=True,
    )


def _success(request, attributes=(), key=KEY):
    return stun.encode(
        stun.Message(request.method, stun.SUCCESS, request.transactionID, tuple(attributes)),
        integrityKey=key,
        fingerprint=True,
    )


def _allocated(request, lifetime=600, key=KEY):
    txid = request.transactionID
    return _success(
        request,
        (
            (turn.XOR_RELAYED_ADDRESS, stun.encodeXorAddress(*RELAYED, txid)),
            (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*MAPPED, txid)),
            (turn.LIFETIME, struct.pack("!I", lifetime)),
        ),
        key,
    )


class CredentialsTests(SynchronousTestCase):
    def test_restCredentials(self):
        """
        The username is EXPIRY:NAME and the password the base64 of
        HMAC-SHA1 of the secret over it, as coturn's --use-auth-secret
        checks.
        """
        username, password = turn.restCredentials(b"s3cret", "alice", 1000.5, 3600)
        self.assertEqual(username, "4600:alice")
        self.assertEqual(
            password,
            base64.b64encode(hmac.new(b"s3cret", b"4600:alice", hashlib.sha1).digest()).decode(),
        )

    def test_longTermKey(self):
        """
        The long-term key is MD5 of username:realm:password.
        """
        self.assertEqual(
            turn.longTermKey("u", "r", "p"), hashlib.md5(b"u:r:p").digest()
        )


class ChannelDataTests(SynchronousTestCase):
    def test_roundTrip(self):
        """
        ChannelData is the channel, the length, the data and padding to four
        bytes; its first byte is 0x40 to 0x4F.
        """
        datagram = turn.encodeChannelData(0x4001, b"hello")
        self.assertEqual(datagram, b"\x40\x01\x00\x05hello\x00\x00\x00")
        self.assertTrue(turn.isChannelData(datagram))
        self.assertEqual(turn.decodeChannelData(datagram), (0x4001, b"hello"))

    def test_notChannelData(self):
        """
        A STUN message's first byte is 0 to 3: not ChannelData.
        """
        self.assertFalse(turn.isChannelData(b"\x00\x01\x00\x00" + bytes(16)))

    def test_lengthPastEnd(self):
        """
        A length field past the datagram is refused.
        """
        self.assertRaises(ValueError, turn.decodeChannelData, b"\x40\x00\x00\x09abc")


class ScriptedTests(SynchronousTestCase):
    """
    The client against a TURN server whose answers the test writes.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.received = []
        self.client = turn.TurnClient(
            self.clock,
            lambda datagram, address: self.sent.append((datagram, address)),
            SERVER,
            USERNAME,
            PASSWORD,
            received=lambda data, peer: self.received.append((data, peer)),
        )

    def request(self):
        """
        The last datagram sent, decoded, and it raw.
        """
        datagram, address = self.sent[-1]
        self.assertEqual(address, SERVER)
        return stun.decode(datagram), datagram

    def answer(self, datagram, source=SERVER):
        return self.client.handle(datagram, source)

    def allocate(self, lifetime=600):
        d = self.client.allocate()
        first, _ = self.request()
        self.answer(_error(first, 401, "Unauthorized"))
        second, _ = self.request()
        self.answer(_allocated(second, lifetime))
        return self.successResultOf(d)

    def test_challengeThenIntegrity(self):
        """
        The first Allocate carries no credentials; after the 401 with REALM
        and NONCE, a new one carries USERNAME, REALM, NONCE and a
        MESSAGE-INTEGRITY keyed with the long-term key.
        """
        d = self.client.allocate()
        first, _ = self.request()
        self.assertEqual((first.method, first.messageClass), (turn.ALLOCATE, stun.REQUEST))
        self.assertEqual(first.get(turn.REQUESTED_TRANSPORT), bytes((17, 0, 0, 0)))
        self.assertIsNone(first.get(stun.USERNAME))
        self.answer(_error(first, 401, "Unauthorized"))
        second, raw = self.request()
        self.assertNotEqual(second.transactionID, first.transactionID)
        self.assertEqual(second.get(stun.USERNAME), USERNAME.encode())
        self.assertEqual(second.get(stun.REALM), REALM.encode())
        self.assertEqual(second.get(stun.NONCE), b"n1")
        self.assertTrue(stun.verifyIntegrity(raw, KEY))
        self.answer(_allocated(second))
        self.assertEqual(self.successResultOf(d), RELAYED)
        self.assertEqual(self.client.mapped, MAPPED)

    def test_staleNonce(self):
        """
        A 438 brings a new nonce: the request goes again with it.
        """
        self.allocate()
        d = self.client.permit(PEER[0])
        first, _ = self.request()
        self.answer(_error(first, 438, "Stale Nonce", nonce=b"n2"))
        second, raw = self.request()
        self.assertEqual(second.get(stun.NONCE), b"n2")
        self.assertTrue(stun.verifyIntegrity(raw, KEY))
        self.answer(_success(second))
        self.successResultOf(d)

    def test_staleNonceTwice(self):
        """
        A second 438 to the retried request fails it, with the code.
        """
        self.allocate()
        d = self.client.permit(PEER[0])
        self.answer(_error(self.request()[0], 438, "Stale Nonce", nonce=b"n2"))
        self.answer(_error(self.request()[0], 438, "Stale Nonce", nonce=b"n3"))
        failure = self.failureResultOf(d, turn.TurnError)
        self.assertEqual(failure.value.code, 438)
        self.assertEqual(str(failure.value), "CreatePermission refused: 438 Stale Nonce")

    def test_refusedWithCredentials(self):
        """
        A 401 to an Allocate that carried credentials means they are wrong:
        not retried, and reported with the code and reason.
        """
        d = self.client.allocate()
        self.answer(_error(self.request()[0], 401, "Unauthorized"))
        self.answer(_error(self.request()[0], 401, "Unauthorized", nonce=b"n2"))
        failure = self.failureResultOf(d, turn.TurnError)
        self.assertEqual((failure.value.code, failure.value.reason), (401, "Unauthorized"))
        self.assertEqual(len(self.sent), 2)

    def test_forbidden(self):
        """
        A 403 to CreatePermission fails it plainly.
        """
        self.allocate()
        d = self.client.permit(PEER[0])
        self.answer(_error(self.request()[0], 403, "Forbidden IP", nonce=None))
        failure = self.failureResultOf(d, turn.TurnError)
        self.assertEqual(str(failure.value), "CreatePermission refused: 403 Forbidden IP")

    def test_noRealm(self):
        """
        A 401 without a REALM leaves nothing to answer in: a failure.
        """
        d = self.client.allocate()
        self.answer(_error(self.request()[0], 401, "Unauthorized", realm=False))
        failure = self.failureResultOf(d, turn.TurnError)
        self.assertIn("no REALM", str(failure.value))

    def test_answerNotSigned(self):
        """
        A success answer whose MESSAGE-INTEGRITY is not keyed with our
        credentials is refused: anyone could send it from the server's
        address.
        """
        d = self.client.allocate()
        self.answer(_error(self.request()[0], 401, "Unauthorized"))
        self.answer(_allocated(self.request()[0], key=b"not the key"))
        failure = self.failureResultOf(d, turn.TurnError)
        self.assertIn("MESSAGE-INTEGRITY", str(failure.value))

    def test_timeout(self):
        """
        A server that never answers: the Allocate is retransmitted on the
        schedule, then fails with TransactionTimeout.
        """
        d = self.client.allocate()
        self.clock.pump([1] * 60)
        self.failureResultOf(d, TransactionTimeout)
        self.assertEqual(len(self.sent), len(turn.RETRANSMISSIONS))

    def test_otherSource(self):
        """
        What comes from another address is not the client's.
        """
        d = self.client.allocate()
        self.assertFalse(self.answer(_error(self.request()[0], 401, "x"), ("192.0.2.99", 3478)))
        self.assertNoResult(d)

    def test_refreshBeforeExpiry(self):
        """
        The allocation is refreshed a minute before it expires, with the
        credentials, and again after the answer.
        """
        self.allocate(lifetime=600)
        count = len(self.sent)
        self.clock.advance(539)
        self.assertEqual(len(self.sent), count)
        self.clock.advance(1)
        refresh, raw = self.request()
        self.assertEqual(refresh.method, turn.REFRESH)
        self.assertTrue(stun.verifyIntegrity(raw, KEY))
        self.answer(_success(refresh, ((turn.LIFETIME, struct.pack("!I", 300)),)))
        self.assertEqual(self.client.lifetime, 300)
        self.clock.advance(240)
        self.assertEqual(self.request()[0].method, turn.REFRESH)
        self.assertNotEqual(self.request()[0].transactionID, refresh.transactionID)

    def test_refreshRefused(self):
        """
        A refused refresh is logged and the allocation given up: no
        relayed address, no timers.
        """
        self.allocate()
        self.clock.advance(540)
        self.answer(_error(self.request()[0], 437, "Allocation Mismatch", nonce=None))
        self.assertIsNone(self.client.relayed)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.flushLoggedErrors()

    def test_dataIndication(self):
        """
        A Data indication brings a peer's datagram and its address.
        """
        self.allocate()
        txid = bytes(range(12))
        self.assertTrue(
            self.answer(
                stun.encode(
                    stun.Message(
                        turn.DATA,
                        stun.INDICATION,
                        txid,
                        (
                            (turn.XOR_PEER_ADDRESS, stun.encodeXorAddress(*PEER, txid)),
                            (turn.DATA_ATTRIBUTE, b"hello"),
                        ),
                    )
                )
            )
        )
        self.assertEqual(self.received, [(b"hello", PEER)])

    def test_sendIndicationThenChannel(self):
        """
        Data to a peer goes in a Send indication until a channel is bound,
        then in ChannelData; ChannelData on the channel comes out as the
        peer's.
        """
        self.allocate()
        self.client.sendTo(b"one", PEER)
        indication, _ = self.request()
        self.assertEqual((indication.method, indication.messageClass), (turn.SEND, stun.INDICATION))
        self.assertEqual(
            stun.decodeXorAddress(indication.get(turn.XOR_PEER_ADDRESS), indication.transactionID),
            PEER,
        )
        self.assertEqual(indication.get(turn.DATA_ATTRIBUTE), b"one")
        d = self.client.bind(PEER)
        bind, _ = self.request()
        self.assertEqual(bind.get(turn.CHANNEL_NUMBER), b"\x40\x00\x00\x00")
        self.answer(_success(bind))
        self.assertEqual(self.successResultOf(d), 0x4000)
        self.client.sendTo(b"two", PEER)
        self.assertEqual(self.sent[-1], (turn.encodeChannelData(0x4000, b"two"), SERVER))
        self.assertTrue(self.answer(turn.encodeChannelData(0x4000, b"back")))
        self.assertEqual(self.received, [(b"back", PEER)])
        self.assertFalse(self.answer(turn.encodeChannelData(0x4001, b"unbound")))

    def test_renewals(self):
        """
        A permission is renewed after four minutes, a channel after nine.
        """
        self.allocate(lifetime=3600)
        self.client.permit(PEER[0])
        self.answer(_success(self.request()[0]))
        self.client.bind(PEER)
        self.answer(_success(self.request()[0]))
        self.clock.advance(240)
        self.assertEqual(self.request()[0].method, turn.CREATE_PERMISSION)
        self.answer(_success(self.request()[0]))
        self.clock.advance(300)
        self.assertEqual(self.request()[0].method, turn.CHANNEL_BIND)

    def test_stopDeallocates(self):
        """
        stop() sends a Refresh of lifetime 0 with the credentials, once,
        and leaves no timer.
        """
        self.allocate()
        self.client.permit(PEER[0])
        self.answer(_success(self.request()[0]))
        self.client.stop()
        refresh, raw = self.request()
        self.assertEqual(refresh.method, turn.REFRESH)
        self.assertEqual(refresh.get(turn.LIFETIME), bytes(4))
        self.assertTrue(stun.verifyIntegrity(raw, KEY))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        count = len(self.sent)
        self.clock.advance(1000)
        self.assertEqual(len(self.sent), count)

    def test_stopBeforeAllocation(self):
        """
        stop() while the Allocate is in flight withdraws it and sends
        nothing more.
        """
        d = self.client.allocate()
        self.client.stop()
        self.failureResultOf(d)
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
