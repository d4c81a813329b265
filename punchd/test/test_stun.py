"""
Tests for L{punchd.stun}.
"""

import binascii
import dataclasses
import hashlib
import hmac
import struct

from twisted.trial.unittest import SynchronousTestCase

from punchd import stun
from punchd.stun import (
    BINDING,
    CHANGE_REQUEST,
    ERROR,
    ERROR_CODE,
    FINGERPRINT,
    INDICATION,
    MAGIC_COOKIE,
    MAPPED_ADDRESS,
    MESSAGE_INTEGRITY,
    MESSAGE_INTEGRITY_SHA256,
    NONCE,
    REALM,
    REQUEST,
    SOFTWARE,
    SUCCESS,
    USERNAME,
    XOR_MAPPED_ADDRESS,
    BadAttribute,
    FingerprintMismatch,
    MalformedMessage,
    Message,
    NotStun,
    StunError,
    addIntegritySHA256,
    decode,
    decodeAddress,
    decodeChangeRequest,
    decodeErrorCode,
    decodeXorAddress,
    encode,
    encodeAddress,
    encodeChangeRequest,
    encodeErrorCode,
    encodeXorAddress,
    looksLikeStun,
    newTransactionID,
    verifyIntegrity,
    verifyIntegritySHA256,
)
from punchd.test.optional import given, settings, st

# RFC 5769 test vectors, as printed in the RFC (padding there is 0x20).

SAMPLE_REQUEST = bytes.fromhex(
    "00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74"
    "00 24 00 04 6e 00 01 ff"
    "80 29 00 08 93 2f f9 b1 51 26 3b 36"
    "00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20"
    "00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2"
    "80 28 00 04 e5 7a 3b cf"
)

SAMPLE_IPV4_RESPONSE = bytes.fromhex(
    "01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 08 00 01 a1 47 e1 12 a6 43"
    "00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7"
    "80 28 00 04 c0 7d 4c 96"
)

SAMPLE_IPV6_RESPONSE = bytes.fromhex(
    "01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae"
    "80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20"
    "00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9"
    "00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41"
    "80 28 00 04 c8 fb 0b 4c"
)

SAMPLE_LONG_TERM_REQUEST = bytes.fromhex(
    "00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e"
    "00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00"
    "00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46"
    "53 54 76 79 36 34 73 41"
    "00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00"
    "00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66"
)

SAMPLE_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
SAMPLE_TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
LONG_TERM_USERNAME = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
LONG_TERM_KEY = hashlib.md5(
    (LONG_TERM_USERNAME + ":example.org:TheMatrIX").encode("utf-8"),
    usedforsecurity=False,
).digest()

ICE_PRIORITY = 0x0024
ICE_CONTROLLED = 0x8029
COOKIE = struct.pack("!I", MAGIC_COOKIE)
TRAILERS = {MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256, FINGERPRINT}
FUZZ = settings(max_examples=200, deadline=None)


def withoutTrailers(message):
    """
    Drop MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT from a
    message.
    """
    return dataclasses.replace(
        message,
        attributes=tuple(a for a in message.attributes if a[0] not in TRAILERS),
    )


def attributeTypes(data):
    """
    The attribute types of a datagram, in wire order.
    """
    return [t for t, v in decode(data).attributes]


transactionIDs = st.one_of(
    st.binary(min_size=12, max_size=12),
    st.binary(min_size=16, max_size=16).filter(lambda t: t[:4] != COOKIE),
)
plainAttributes = st.lists(
    st.tuples(
        st.integers(0, 0xFFFF).filter(lambda t: t not in TRAILERS),
        st.binary(max_size=40),
    ),
    max_size=8,
).map(tuple)
messages = st.builds(
    Message,
    method=st.integers(0, 0xFFF),
    messageClass=st.sampled_from([REQUEST, INDICATION, SUCCESS, ERROR]),
    transactionID=transactionIDs,
    attributes=plainAttributes,
)
keys = st.binary(min_size=1, max_size=32)


class RFC5769SampleRequestTests(SynchronousTestCase):
    """
    RFC 5769 2.1, the sample request with short-term credentials.
    """

    def test_header(self):
        """
        The sample request is a Binding request with the RFC's transaction ID.
        """
        message = decode(SAMPLE_REQUEST)
        self.assertEqual(
            (message.method, message.messageClass, message.transactionID),
            (BINDING, REQUEST, SAMPLE_TRANSACTION_ID),
        )

    def test_notClassic(self):
        """
        A message with the magic cookie is not classic.
        """
        self.assertFalse(decode(SAMPLE_REQUEST).classic)

    def test_attributeOrder(self):
        """
        Attributes come out in wire order, integrity and fingerprint included.
        """
        self.assertEqual(
            attributeTypes(SAMPLE_REQUEST),
            [
                SOFTWARE,
                ICE_PRIORITY,
                ICE_CONTROLLED,
                USERNAME,
                MESSAGE_INTEGRITY,
                FINGERPRINT,
            ],
        )

    def test_username(self):
        """
        USERNAME decodes without its 0x20 padding.
        """
        self.assertEqual(decode(SAMPLE_REQUEST).get(USERNAME), b"evtj:h6vY")

    def test_software(self):
        """
        SOFTWARE decodes to the RFC's text.
        """
        self.assertEqual(decode(SAMPLE_REQUEST).get(SOFTWARE), b"STUN test client")

    def test_integrity(self):
        """
        MESSAGE-INTEGRITY verifies with the RFC's password.
        """
        self.assertTrue(verifyIntegrity(SAMPLE_REQUEST, SAMPLE_PASSWORD))

    def test_integrityWrongKey(self):
        """
        MESSAGE-INTEGRITY does not verify with another password.
        """
        self.assertFalse(verifyIntegrity(SAMPLE_REQUEST, b"VOkJxbRl1RmTxUk/WvJxBT"))

    def test_noIntegritySHA256(self):
        """
        There is no MESSAGE-INTEGRITY-SHA256 to verify.
        """
        self.assertFalse(verifyIntegritySHA256(SAMPLE_REQUEST, SAMPLE_PASSWORD))

    def test_fingerprintValue(self):
        """
        The FINGERPRINT value is kept as the last attribute.
        """
        self.assertEqual(
            decode(SAMPLE_REQUEST).attributes[-1],
            (FINGERPRINT, bytes.fromhex("e57a3bcf")),
        )

    def test_corruptFingerprint(self):
        """
        A flipped bit in FINGERPRINT raises L{FingerprintMismatch}.
        """
        data = bytearray(SAMPLE_REQUEST)
        data[-1] ^= 0x01
        self.assertRaises(FingerprintMismatch, decode, bytes(data))

    def test_corruptBody(self):
        """
        A flipped bit in an attribute no longer matches FINGERPRINT.
        """
        data = bytearray(SAMPLE_REQUEST)
        data[24] ^= 0x01
        self.assertRaises(FingerprintMismatch, decode, bytes(data))

    def test_corruptBodyIntegrity(self):
        """
        A flipped bit in an attribute no longer matches MESSAGE-INTEGRITY.
        """
        data = bytearray(SAMPLE_REQUEST)
        data[24] ^= 0x01
        self.assertFalse(verifyIntegrity(bytes(data), SAMPLE_PASSWORD))

    def test_looksLikeStun(self):
        """
        The sample request passes the cheap pre-check.
        """
        self.assertTrue(looksLikeStun(SAMPLE_REQUEST))


class RFC5769ResponseTests(SynchronousTestCase):
    """
    RFC 5769 2.2 and 2.3, the sample IPv4 and IPv6 responses.
    """

    def test_ipv4Header(self):
        """
        The IPv4 response is a Binding success response.
        """
        message = decode(SAMPLE_IPV4_RESPONSE)
        self.assertEqual(
            (message.method, message.messageClass, message.transactionID),
            (BINDING, SUCCESS, SAMPLE_TRANSACTION_ID),
        )

    def test_ipv4Software(self):
        """
        SOFTWARE decodes without its 0x20 padding byte.
        """
        self.assertEqual(decode(SAMPLE_IPV4_RESPONSE).get(SOFTWARE), b"test vector")

    def test_ipv4XorMappedAddress(self):
        """
        XOR-MAPPED-ADDRESS decodes to 192.0.2.1 port 32853.
        """
        message = decode(SAMPLE_IPV4_RESPONSE)
        self.assertEqual(
            decodeXorAddress(message.get(XOR_MAPPED_ADDRESS), message.transactionID),
            ("192.0.2.1", 32853),
        )

    def test_ipv4XorMappedAddressEncodes(self):
        """
        Encoding 192.0.2.1 port 32853 gives the RFC's XOR-MAPPED-ADDRESS.
        """
        self.assertEqual(
            encodeXorAddress("192.0.2.1", 32853, SAMPLE_TRANSACTION_ID),
            decode(SAMPLE_IPV4_RESPONSE).get(XOR_MAPPED_ADDRESS),
        )

    def test_ipv4Integrity(self):
        """
        MESSAGE-INTEGRITY of the IPv4 response verifies.
        """
        self.assertTrue(verifyIntegrity(SAMPLE_IPV4_RESPONSE, SAMPLE_PASSWORD))

    def test_ipv4IntegrityWrongKey(self):
        """
        MESSAGE-INTEGRITY of the IPv4 response fails with another key.
        """
        self.assertFalse(verifyIntegrity(SAMPLE_IPV4_RESPONSE, b"wrong"))

    def test_ipv6XorMappedAddress(self):
        """
        XOR-MAPPED-ADDRESS decodes to 2001:db8:1234:5678:11:2233:4455:6677
        port 32853.
        """
        message = decode(SAMPLE_IPV6_RESPONSE)
        self.assertEqual(
            decodeXorAddress(message.get(XOR_MAPPED_ADDRESS), message.transactionID),
            ("2001:db8:1234:5678:11:2233:4455:6677", 32853),
        )

    def test_ipv6XorMappedAddressEncodes(self):
        """
        Encoding the IPv6 address gives the RFC's XOR-MAPPED-ADDRESS.
        """
        self.assertEqual(
            encodeXorAddress(
                "2001:db8:1234:5678:11:2233:4455:6677", 32853, SAMPLE_TRANSACTION_ID
            ),
            decode(SAMPLE_IPV6_RESPONSE).get(XOR_MAPPED_ADDRESS),
        )

    def test_ipv6Integrity(self):
        """
        MESSAGE-INTEGRITY of the IPv6 response verifies.
        """
        self.assertTrue(verifyIntegrity(SAMPLE_IPV6_RESPONSE, SAMPLE_PASSWORD))

    def test_ipv6FingerprintChecked(self):
        """
        A corrupted IPv6 response fails its FINGERPRINT.
        """
        data = bytearray(SAMPLE_IPV6_RESPONSE)
        data[50] ^= 0x80
        self.assertRaises(FingerprintMismatch, decode, bytes(data))


class RFC5769LongTermTests(SynchronousTestCase):
    """
    RFC 5769 2.4, the sample request with long-term credentials.
    """

    def test_attributes(self):
        """
        USERNAME, NONCE and REALM decode to the RFC's values.
        """
        message = decode(SAMPLE_LONG_TERM_REQUEST)
        self.assertEqual(
            (
                message.get(USERNAME).decode("utf-8"),
                message.get(NONCE),
                message.get(REALM),
            ),
            (LONG_TERM_USERNAME, b"f//499k954d6OL34oL9FSTvy64sA", b"example.org"),
        )

    def test_integrity(self):
        """
        MESSAGE-INTEGRITY verifies with the MD5 long-term key.
        """
        self.assertTrue(verifyIntegrity(SAMPLE_LONG_TERM_REQUEST, LONG_TERM_KEY))

    def test_encodeMatchesVector(self):
        """
        Encoding the attributes with the long-term key reproduces the vector
        byte for byte (it pads with zeroes, as L{encode} does).
        """
        message = withoutTrailers(decode(SAMPLE_LONG_TERM_REQUEST))
        self.assertEqual(
            encode(message, integrityKey=LONG_TERM_KEY), SAMPLE_LONG_TERM_REQUEST
        )


class MessageTests(SynchronousTestCase):
    """
    Tests for L{Message}.
    """

    def test_classic(self):
        """
        A message with a 16-byte transaction ID is classic.
        """
        self.assertTrue(Message(BINDING, REQUEST, b"\x01" * 16).classic)

    def test_notClassic(self):
        """
        A message with a 12-byte transaction ID is not classic.
        """
        self.assertFalse(Message(BINDING, REQUEST, b"\x01" * 12).classic)

    def test_defaultAttributes(self):
        """
        A message has no attributes unless given some.
        """
        self.assertEqual(Message(BINDING, REQUEST, b"\x01" * 12).attributes, ())

    def test_getFirst(self):
        """
        C{get} returns the first value of a repeated attribute.
        """
        message = Message(
            BINDING, REQUEST, b"\x01" * 12, ((USERNAME, b"a"), (USERNAME, b"b"))
        )
        self.assertEqual(message.get(USERNAME), b"a")

    def test_getMissing(self):
        """
        C{get} returns L{None} for an absent attribute.
        """
        self.assertIsNone(Message(BINDING, REQUEST, b"\x01" * 12).get(USERNAME))

    def test_getAll(self):
        """
        C{getAll} returns every value of an attribute in order.
        """
        message = Message(
            BINDING,
            REQUEST,
            b"\x01" * 12,
            ((USERNAME, b"a"), (SOFTWARE, b"x"), (USERNAME, b"b")),
        )
        self.assertEqual(message.getAll(USERNAME), [b"a", b"b"])

    def test_getAllMissing(self):
        """
        C{getAll} returns an empty list for an absent attribute.
        """
        self.assertEqual(Message(BINDING, REQUEST, b"\x01" * 12).getAll(USERNAME), [])

    def test_frozen(self):
        """
        Messages cannot be changed.
        """
        message = Message(BINDING, REQUEST, b"\x01" * 12)
        self.assertRaises(
            dataclasses.FrozenInstanceError, setattr, message, "method", 2
        )

    def test_hashable(self):
        """
        Equal messages hash equal.
        """
        self.assertEqual(
            hash(Message(BINDING, REQUEST, b"\x01" * 12, ((USERNAME, b"a"),))),
            hash(Message(BINDING, REQUEST, b"\x01" * 12, ((USERNAME, b"a"),))),
        )


class NewTransactionIDTests(SynchronousTestCase):
    """
    Tests for L{newTransactionID}.
    """

    def test_length(self):
        """
        A new transaction ID is 12 bytes.
        """
        self.assertEqual(len(newTransactionID()), 12)

    def test_fresh(self):
        """
        Two new transaction IDs differ.
        """
        self.assertNotEqual(newTransactionID(), newTransactionID())


class EncodeTests(SynchronousTestCase):
    """
    Tests for L{encode}.
    """

    transactionID = bytes(range(12))

    def test_bindingRequest(self):
        """
        A bare Binding request is the 20-byte header.
        """
        self.assertEqual(
            encode(Message(BINDING, REQUEST, self.transactionID)),
            b"\x00\x01\x00\x00" + COOKIE + self.transactionID,
        )

    def test_messageTypeBits(self):
        """
        Method and class bits interleave as RFC 8489 5 draws them.
        """
        types = [
            struct.unpack("!H", encode(Message(method, cls, self.transactionID))[:2])[0]
            for method, cls in [
                (BINDING, INDICATION),
                (BINDING, SUCCESS),
                (BINDING, ERROR),
                (0xFFF, ERROR),
                (0x0080, REQUEST),
            ]
        ]
        self.assertEqual(types, [0x0011, 0x0101, 0x0111, 0x3FFF, 0x0200])

    def test_zeroPadding(self):
        """
        Values are padded with zeroes to a multiple of 4 bytes.
        """
        data = encode(
            Message(BINDING, REQUEST, self.transactionID, ((SOFTWARE, b"x"),))
        )
        self.assertEqual(data[20:], b"\x80\x22\x00\x01x\x00\x00\x00")

    def test_lengthField(self):
        """
        The length field counts the padded attributes.
        """
        data = encode(
            Message(BINDING, REQUEST, self.transactionID, ((SOFTWARE, b"x"),))
        )
        self.assertEqual(data[2:4], b"\x00\x08")

    def test_classicHeader(self):
        """
        A classic message's 16-byte transaction ID replaces cookie and ID.
        """
        transactionID = bytes(range(16))
        self.assertEqual(
            encode(Message(BINDING, REQUEST, transactionID)),
            b"\x00\x01\x00\x00" + transactionID,
        )

    def test_integrityLength(self):
        """
        MESSAGE-INTEGRITY is a 20-byte HMAC-SHA1.
        """
        data = encode(Message(BINDING, REQUEST, self.transactionID), b"key")
        self.assertEqual(len(decode(data).get(MESSAGE_INTEGRITY)), 20)

    def test_integrityValue(self):
        """
        MESSAGE-INTEGRITY covers the message with the length field counting
        it, and nothing after it.
        """
        data = encode(
            Message(BINDING, REQUEST, self.transactionID, ((SOFTWARE, b"abcd"),)),
            b"key",
            fingerprint=True,
        )
        text = data[:2] + b"\x00\x20" + data[4:28]
        self.assertEqual(data[32:52], hmac.digest(b"key", text, "sha1"))

    def test_integritySHA256Length(self):
        """
        MESSAGE-INTEGRITY-SHA256 is the full 32-byte HMAC-SHA256.
        """
        data = encode(
            Message(BINDING, REQUEST, self.transactionID),
            integritySHA256Key=b"key",
        )
        self.assertEqual(len(decode(data).get(MESSAGE_INTEGRITY_SHA256)), 32)

    def test_trailerOrder(self):
        """
        MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT come last,
        in that order.
        """
        data = encode(
            Message(BINDING, REQUEST, self.transactionID, ((SOFTWARE, b"x"),)),
            b"key",
            True,
            b"key2",
        )
        self.assertEqual(
            attributeTypes(data),
            [SOFTWARE, MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256, FINGERPRINT],
        )

    def test_fingerprintValue(self):
        """
        FINGERPRINT is the CRC-32 of what precedes it XOR 0x5354554E.
        """
        data = encode(Message(BINDING, REQUEST, self.transactionID), fingerprint=True)
        self.assertEqual(
            struct.unpack("!I", data[-4:])[0],
            binascii.crc32(data[:-8]) ^ 0x5354554E,
        )

    def test_resign(self):
        """
        Re-encoding a signed message with a new key replaces its integrity and
        fingerprint instead of repeating them.
        """
        data = encode(decode(SAMPLE_REQUEST), b"other", fingerprint=True)
        self.assertEqual(
            attributeTypes(data),
            [
                SOFTWARE,
                ICE_PRIORITY,
                ICE_CONTROLLED,
                USERNAME,
                MESSAGE_INTEGRITY,
                FINGERPRINT,
            ],
        )

    def test_resignVerifies(self):
        """
        A re-signed message verifies with the new key.
        """
        data = encode(decode(SAMPLE_REQUEST), b"other", fingerprint=True)
        self.assertTrue(verifyIntegrity(data, b"other"))

    def test_fingerprintKeepsIntegrity(self):
        """
        Adding only a fingerprint keeps an existing MESSAGE-INTEGRITY.
        """
        message = withoutTrailers(decode(SAMPLE_LONG_TERM_REQUEST))
        signed = decode(encode(message, LONG_TERM_KEY))
        data = encode(signed, fingerprint=True)
        self.assertEqual(
            (attributeTypes(data)[-2:], verifyIntegrity(data, LONG_TERM_KEY)),
            ([MESSAGE_INTEGRITY, FINGERPRINT], True),
        )

    def test_verbatim(self):
        """
        Without options, attributes are written as given, even integrity ones.
        """
        message = decode(SAMPLE_LONG_TERM_REQUEST)
        self.assertEqual(encode(message), SAMPLE_LONG_TERM_REQUEST)

    def test_classicIntegrity(self):
        """
        A classic message's MESSAGE-INTEGRITY pads the HMAC input with zeroes
        to a multiple of 64 bytes, as RFC 3489 does.
        """
        transactionID = bytes(range(16))
        data = encode(Message(BINDING, REQUEST, transactionID), b"key")
        text = data[:20] + bytes(44)
        self.assertEqual(data[24:], hmac.digest(b"key", text, "sha1"))

    def test_classicIntegrityVerifies(self):
        """
        A classic message's MESSAGE-INTEGRITY verifies.
        """
        transactionID = bytes(range(16))
        data = encode(
            Message(BINDING, REQUEST, transactionID, ((SOFTWARE, b"old"),)), b"key"
        )
        self.assertTrue(verifyIntegrity(data, b"key"))

    def test_methodTooLarge(self):
        """
        A method wider than 12 bits is refused.
        """
        self.assertRaises(
            ValueError, encode, Message(0x1000, REQUEST, self.transactionID)
        )

    def test_negativeMethod(self):
        """
        A negative method is refused.
        """
        self.assertRaises(ValueError, encode, Message(-1, REQUEST, self.transactionID))

    def test_badClass(self):
        """
        A class other than 0 to 3 is refused.
        """
        self.assertRaises(ValueError, encode, Message(BINDING, 4, self.transactionID))

    def test_badTransactionID(self):
        """
        A transaction ID of neither 12 nor 16 bytes is refused.
        """
        self.assertRaises(ValueError, encode, Message(BINDING, REQUEST, b"\x00" * 13))

    def test_classicIDWithCookie(self):
        """
        A classic transaction ID starting with the magic cookie is refused.
        """
        self.assertRaises(
            ValueError, encode, Message(BINDING, REQUEST, COOKIE + b"\x00" * 12)
        )

    def test_attributeTooLong(self):
        """
        An attribute value longer than 65535 bytes is refused.
        """
        message = Message(
            BINDING, REQUEST, self.transactionID, ((SOFTWARE, bytes(65536)),)
        )
        self.assertRaises(ValueError, encode, message)

    def test_attributeTypeTooLarge(self):
        """
        An attribute type wider than 16 bits is refused.
        """
        message = Message(BINDING, REQUEST, self.transactionID, ((0x10000, b""),))
        self.assertRaises(ValueError, encode, message)

    def test_messageTooLong(self):
        """
        A message whose attributes overflow the length field is refused.
        """
        message = Message(
            BINDING,
            REQUEST,
            self.transactionID,
            ((SOFTWARE, bytes(40000)), (SOFTWARE, bytes(40000))),
        )
        self.assertRaises(ValueError, encode, message)

    def test_trailersTooLong(self):
        """
        A message that only overflows once FINGERPRINT is added is refused.
        """
        message = Message(
            BINDING, REQUEST, self.transactionID, ((SOFTWARE, bytes(65531)),)
        )
        self.assertRaises(ValueError, encode, message, fingerprint=True)


class RoundTripTests(SynchronousTestCase):
    """
    L{decode} undoes L{encode}.
    """

    def test_plain(self):
        """
        A message with attributes round trips.
        """
        message = Message(
            BINDING,
            SUCCESS,
            newTransactionID(),
            (
                (XOR_MAPPED_ADDRESS, encodeXorAddress("10.0.0.1", 4000, bytes(12))),
                (MAPPED_ADDRESS, encodeAddress("10.0.0.1", 4000)),
                (SOFTWARE, b"punchd"),
                (USERNAME, b""),
            ),
        )
        self.assertEqual(decode(encode(message)), message)

    def test_classic(self):
        """
        A classic message round trips with its 16-byte transaction ID.
        """
        message = Message(
            BINDING, REQUEST, bytes(range(16)), ((CHANGE_REQUEST, bytes(4)),)
        )
        self.assertEqual(decode(encode(message)), message)

    def test_integrityAndFingerprint(self):
        """
        With integrity and fingerprint, decoding gives the message back plus
        those two attributes.
        """
        message = Message(BINDING, REQUEST, newTransactionID(), ((SOFTWARE, b"abc"),))
        decoded = decode(encode(message, b"key", fingerprint=True))
        self.assertEqual(withoutTrailers(decoded), message)

    def test_integrityAndFingerprintVerifies(self):
        """
        An encoded message with integrity and fingerprint verifies.
        """
        message = Message(BINDING, REQUEST, newTransactionID(), ((SOFTWARE, b"abc"),))
        self.assertTrue(verifyIntegrity(encode(message, b"key", True), b"key"))

    def test_integritySHA256Verifies(self):
        """
        An encoded message with both integrity attributes verifies both.
        """
        data = encode(Message(BINDING, REQUEST, newTransactionID()), b"k1", True, b"k2")
        self.assertEqual(
            (verifyIntegrity(data, b"k1"), verifyIntegritySHA256(data, b"k2")),
            (True, True),
        )

    @FUZZ
    @given(messages)
    def test_property(self, message):
        """
        Any message without integrity attributes round trips.
        """
        self.assertEqual(decode(encode(message)), message)

    @FUZZ
    @given(
        messages, st.one_of(st.none(), keys), st.booleans(), st.one_of(st.none(), keys)
    )
    def test_propertyWithTrailers(self, message, key, fingerprint, key256):
        """
        Any message round trips with any combination of trailers.
        """
        decoded = decode(encode(message, key, fingerprint, key256))
        self.assertEqual(withoutTrailers(decoded), message)

    @FUZZ
    @given(messages, keys, keys)
    def test_propertyIntegrity(self, message, key, key256):
        """
        Any encoded message verifies with its keys and not with others.
        """
        data = encode(message, key, True, key256)
        self.assertEqual(
            (
                verifyIntegrity(data, key),
                verifyIntegritySHA256(data, key256),
                verifyIntegrity(data, key + b"x"),
                verifyIntegritySHA256(data, key256 + b"x"),
            ),
            (True, True, False, False),
        )


class DecodeTests(SynchronousTestCase):
    """
    Tests for L{decode} beyond the RFC 5769 vectors.
    """

    transactionID = bytes(range(12))

    def header(self, length, messageType=0x0001):
        """
        Build an RFC 8489 header.
        """
        return (
            struct.pack("!HHI", messageType, length, MAGIC_COOKIE) + self.transactionID
        )

    def test_bytearray(self):
        """
        A bytearray decodes like bytes.
        """
        self.assertEqual(decode(bytearray(SAMPLE_REQUEST)), decode(SAMPLE_REQUEST))

    def test_memoryview(self):
        """
        A memoryview decodes like bytes.
        """
        self.assertEqual(decode(memoryview(SAMPLE_REQUEST)), decode(SAMPLE_REQUEST))

    def test_classic(self):
        """
        A message without the magic cookie has a 16-byte transaction ID.
        """
        transactionID = bytes(range(16))
        message = decode(b"\x01\x01\x00\x00" + transactionID)
        self.assertEqual(
            (message.messageClass, message.transactionID, message.classic),
            (SUCCESS, transactionID, True),
        )

    def test_anyPadding(self):
        """
        Padding bytes are ignored whatever their value.
        """
        data = self.header(8) + b"\x80\x22\x00\x01x\xff\xfe\xfd"
        self.assertEqual(decode(data).attributes, ((SOFTWARE, b"x"),))

    def test_ignoredAfterIntegrity(self):
        """
        Attributes after MESSAGE-INTEGRITY other than
        MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are left out.
        """
        body = (
            struct.pack("!HH", MESSAGE_INTEGRITY, 20)
            + bytes(20)
            + struct.pack("!HH", SOFTWARE, 4)
            + b"late"
            + struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 32)
            + bytes(32)
            + struct.pack("!HH", MESSAGE_INTEGRITY, 20)
            + bytes(20)
        )
        self.assertEqual(
            attributeTypes(self.header(len(body)) + body),
            [MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256],
        )

    def test_ignoredAfterIntegritySHA256(self):
        """
        Attributes after MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT are
        left out, MESSAGE-INTEGRITY included.
        """
        body = (
            struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 32)
            + bytes(32)
            + struct.pack("!HH", MESSAGE_INTEGRITY, 20)
            + bytes(20)
            + struct.pack("!HH", SOFTWARE, 4)
            + b"late"
            + struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 32)
            + bytes(32)
        )
        self.assertEqual(
            attributeTypes(self.header(len(body)) + body),
            [MESSAGE_INTEGRITY_SHA256],
        )

    def test_fingerprintAfterIgnored(self):
        """
        FINGERPRINT is kept and checked after ignored attributes.
        """
        message = Message(
            BINDING,
            REQUEST,
            self.transactionID,
            ((MESSAGE_INTEGRITY, bytes(20)), (SOFTWARE, b"late")),
        )
        self.assertEqual(
            attributeTypes(encode(message, fingerprint=True)),
            [MESSAGE_INTEGRITY, FINGERPRINT],
        )

    def test_ignoredStillFramed(self):
        """
        An ignored attribute that runs past the end is still an error.
        """
        body = (
            struct.pack("!HH", MESSAGE_INTEGRITY, 20)
            + bytes(20)
            + struct.pack("!HH", SOFTWARE, 8)
            + b"late"
        )
        self.assertRaises(MalformedMessage, decode, self.header(len(body)) + body)

    def test_truncatedIntegritySHA256(self):
        """
        A 16-byte MESSAGE-INTEGRITY-SHA256 is accepted.
        """
        body = struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 16) + bytes(16)
        self.assertEqual(
            decode(self.header(len(body)) + body).attributes,
            ((MESSAGE_INTEGRITY_SHA256, bytes(16)),),
        )


class DecodeErrorTests(SynchronousTestCase):
    """
    L{decode} raises a specific L{StunError} for each kind of bad input.
    """

    transactionID = bytes(range(12))

    def header(self, length, messageType=0x0001):
        """
        Build an RFC 8489 header.
        """
        return (
            struct.pack("!HHI", messageType, length, MAGIC_COOKIE) + self.transactionID
        )

    def test_hierarchy(self):
        """
        Every decoding error is a L{StunError} and a L{ValueError}.
        """
        for error in [NotStun, MalformedMessage, BadAttribute, FingerprintMismatch]:
            self.assertTrue(
                issubclass(error, StunError) and issubclass(error, ValueError)
            )

    def test_empty(self):
        """
        An empty datagram is not STUN.
        """
        self.assertRaises(NotStun, decode, b"")

    def test_truncatedHeader(self):
        """
        A datagram shorter than a header is not STUN, and the error says how
        long it was.
        """
        error = self.assertRaises(NotStun, decode, SAMPLE_REQUEST[:19])
        self.assertIn("19 bytes", str(error))

    def test_badFirstBits(self):
        """
        A datagram whose two top bits are not zero is not STUN.
        """
        self.assertRaises(NotStun, decode, self.header(0, 0x4001))

    def test_lengthNotMultipleOfFour(self):
        """
        A length field that is not a multiple of 4 is not STUN.
        """
        self.assertRaises(NotStun, decode, self.header(2) + b"\x00\x00")

    def test_lengthTooLong(self):
        """
        A length field larger than the datagram is malformed.
        """
        self.assertRaises(MalformedMessage, decode, SAMPLE_REQUEST[:-4])

    def test_lengthTooShort(self):
        """
        A length field smaller than the datagram is malformed.
        """
        self.assertRaises(MalformedMessage, decode, SAMPLE_REQUEST + b"\x00" * 4)

    def test_attributePastEnd(self):
        """
        An attribute running past the end of the message is malformed, and
        the error names the attribute.
        """
        body = struct.pack("!HH", SOFTWARE, 5) + b"abcd"
        error = self.assertRaises(
            MalformedMessage, decode, self.header(len(body)) + body
        )
        self.assertIn("0x8022", str(error))

    def test_badFingerprint(self):
        """
        A wrong FINGERPRINT raises L{FingerprintMismatch}.
        """
        body = struct.pack("!HHI", FINGERPRINT, 4, 0)
        self.assertRaises(FingerprintMismatch, decode, self.header(len(body)) + body)

    def test_fingerprintNotLast(self):
        """
        A FINGERPRINT followed by another attribute raises
        L{FingerprintMismatch}.
        """
        header = self.header(12)
        crc = binascii.crc32(header) ^ 0x5354554E
        data = header + struct.pack("!HHIHH", FINGERPRINT, 4, crc, SOFTWARE, 0)
        error = self.assertRaises(FingerprintMismatch, decode, data)
        self.assertIn("last attribute", str(error))

    def test_fingerprintWrongLength(self):
        """
        A FINGERPRINT that is not 4 bytes raises L{FingerprintMismatch}.
        """
        body = struct.pack("!HH", FINGERPRINT, 8) + bytes(8)
        self.assertRaises(FingerprintMismatch, decode, self.header(len(body)) + body)

    def test_integrityWrongLength(self):
        """
        A MESSAGE-INTEGRITY that is not 20 bytes is a bad attribute.
        """
        body = struct.pack("!HH", MESSAGE_INTEGRITY, 16) + bytes(16)
        self.assertRaises(BadAttribute, decode, self.header(len(body)) + body)

    def test_integritySHA256TooShort(self):
        """
        A MESSAGE-INTEGRITY-SHA256 shorter than 16 bytes is a bad attribute.
        """
        body = struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 12) + bytes(12)
        self.assertRaises(BadAttribute, decode, self.header(len(body)) + body)

    def test_integritySHA256Unaligned(self):
        """
        A MESSAGE-INTEGRITY-SHA256 not a multiple of 4 bytes is a bad
        attribute.
        """
        body = struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 17) + bytes(20)
        self.assertRaises(BadAttribute, decode, self.header(len(body)) + body)

    def test_badAddressFamily(self):
        """
        An address of family 3 is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x03\x00\x50" + bytes(4))

    def test_shortAddress(self):
        """
        An IPv4 address value of 7 bytes is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x01\x00\x50" + bytes(3))


class LooksLikeStunTests(SynchronousTestCase):
    """
    Tests for L{looksLikeStun}.
    """

    def test_vectors(self):
        """
        Every RFC 5769 vector looks like STUN.
        """
        self.assertTrue(
            all(
                looksLikeStun(data)
                for data in [
                    SAMPLE_REQUEST,
                    SAMPLE_IPV4_RESPONSE,
                    SAMPLE_IPV6_RESPONSE,
                    SAMPLE_LONG_TERM_REQUEST,
                ]
            )
        )

    def test_short(self):
        """
        Fewer than 20 bytes do not look like STUN.
        """
        self.assertFalse(looksLikeStun(SAMPLE_REQUEST[:19]))

    def test_firstByte(self):
        """
        A first byte of 4 or more (DTLS, RTP, ...) does not look like STUN.
        """
        self.assertFalse(looksLikeStun(b"\x04" + SAMPLE_REQUEST[1:]))

    def test_lengthMismatch(self):
        """
        A length field that disagrees with the size does not look like STUN.
        """
        self.assertFalse(looksLikeStun(SAMPLE_REQUEST + bytes(4)))

    def test_unaligned(self):
        """
        An unaligned length does not look like STUN even if it matches.
        """
        self.assertFalse(looksLikeStun(b"\x00\x01\x00\x02" + bytes(18)))

    @FUZZ
    @given(st.binary(max_size=64))
    def test_neverRaises(self, data):
        """
        Arbitrary bytes give a boolean.
        """
        self.assertIsInstance(looksLikeStun(data), bool)


class VerifyIntegrityTests(SynchronousTestCase):
    """
    Tests for L{verifyIntegrity} and L{verifyIntegritySHA256}.
    """

    transactionID = bytes(range(12))

    def test_absent(self):
        """
        A message without MESSAGE-INTEGRITY does not verify.
        """
        data = encode(Message(BINDING, REQUEST, self.transactionID), fingerprint=True)
        self.assertFalse(verifyIntegrity(data, b"key"))

    def test_absentSHA256(self):
        """
        A message without MESSAGE-INTEGRITY-SHA256 does not verify.
        """
        data = encode(Message(BINDING, REQUEST, self.transactionID), b"key")
        self.assertFalse(verifyIntegritySHA256(data, b"key"))

    def test_notStun(self):
        """
        A datagram that is not STUN does not verify.
        """
        self.assertFalse(verifyIntegrity(b"hello", b"key"))

    def test_topBitsSet(self):
        """
        A datagram whose top bits are set does not verify even with a right
        HMAC.
        """
        text = b"\x40\x01\x00\x18" + COOKIE + self.transactionID
        mac = hmac.digest(b"key", text, "sha1")
        data = text + struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
        self.assertFalse(verifyIntegrity(data, b"key"))

    def test_truncated(self):
        """
        A truncated message does not verify.
        """
        self.assertFalse(verifyIntegrity(SAMPLE_REQUEST[:-12], SAMPLE_PASSWORD))

    def test_memoryview(self):
        """
        A memoryview verifies like bytes.
        """
        self.assertTrue(verifyIntegrity(memoryview(SAMPLE_REQUEST), SAMPLE_PASSWORD))

    def test_wrongLength(self):
        """
        A MESSAGE-INTEGRITY of the wrong length does not verify.
        """
        message = Message(
            BINDING, REQUEST, self.transactionID, ((MESSAGE_INTEGRITY, bytes(16)),)
        )
        self.assertFalse(verifyIntegrity(encode(message), b"key"))

    def test_afterSHA256Ignored(self):
        """
        A MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 is ignored, so does
        not verify even when its HMAC is right.
        """
        text = (
            b"\x00\x01\x00\x3c"
            + COOKIE
            + self.transactionID
            + struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 32)
            + bytes(32)
        )
        mac = hmac.digest(b"key", text, "sha1")
        data = text + struct.pack("!HH", MESSAGE_INTEGRITY, 20) + mac
        self.assertFalse(verifyIntegrity(data, b"key"))

    def test_truncatedSHA256(self):
        """
        A MESSAGE-INTEGRITY-SHA256 truncated to 16 bytes verifies against the
        first 16 bytes of the HMAC.
        """
        header = b"\x00\x01\x00\x14" + COOKIE + self.transactionID
        mac = hmac.digest(b"key", header, "sha256")[:16]
        data = header + struct.pack("!HH", MESSAGE_INTEGRITY_SHA256, 16) + mac
        self.assertTrue(verifyIntegritySHA256(data, b"key"))

    def test_sha256CoversIntegrity(self):
        """
        MESSAGE-INTEGRITY-SHA256 covers a MESSAGE-INTEGRITY before it.
        """
        data = bytearray(
            encode(Message(BINDING, REQUEST, self.transactionID), b"k1", False, b"k2")
        )
        data[30] ^= 0x01
        self.assertFalse(verifyIntegritySHA256(bytes(data), b"k2"))

    @FUZZ
    @given(st.binary(max_size=128), keys)
    def test_neverRaises(self, data, key):
        """
        Arbitrary bytes give a boolean from both verifiers.
        """
        self.assertEqual(
            (
                type(verifyIntegrity(data, key)),
                type(verifyIntegritySHA256(data, key)),
            ),
            (bool, bool),
        )

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(sorted(TRAILERS | {SOFTWARE})), st.binary(max_size=36)
            ),
            max_size=5,
        ),
        keys,
    )
    def test_neverRaisesOnFramedTrailers(self, attributes, key):
        """
        Well framed messages with trailer attributes of any length give a
        boolean from both verifiers.
        """
        data = encode(Message(BINDING, REQUEST, self.transactionID, tuple(attributes)))
        self.assertEqual(
            (
                type(verifyIntegrity(data, key)),
                type(verifyIntegritySHA256(data, key)),
            ),
            (bool, bool),
        )


class AddressTests(SynchronousTestCase):
    """
    Tests for L{encodeAddress}, L{decodeAddress}, L{encodeXorAddress} and
    L{decodeXorAddress}.
    """

    transactionID = bytes(range(12))

    def test_encodeIPv4(self):
        """
        An IPv4 address encodes as family 1, port, 4 address bytes.
        """
        self.assertEqual(
            encodeAddress("192.0.2.1", 32853), b"\x00\x01\x80\x55\xc0\x00\x02\x01"
        )

    def test_decodeIPv4(self):
        """
        An IPv4 value decodes to dotted quad text and port.
        """
        self.assertEqual(
            decodeAddress(b"\x00\x01\x80\x55\xc0\x00\x02\x01"), ("192.0.2.1", 32853)
        )

    def test_encodeIPv6(self):
        """
        An IPv6 address encodes as family 2, port, 16 address bytes.
        """
        self.assertEqual(
            encodeAddress("2001:db8::1", 1),
            b"\x00\x02\x00\x01" + bytes.fromhex("20010db8000000000000000000000001"),
        )

    def test_canonicalIPv6(self):
        """
        Decoding gives canonical IPv6 text whatever the input spelling.
        """
        self.assertEqual(
            decodeAddress(encodeAddress("2001:DB8:0:0:0:0:0:1", 9)), ("2001:db8::1", 9)
        )

    def test_ignoresFirstByte(self):
        """
        The reserved first byte is ignored.
        """
        self.assertEqual(
            decodeAddress(b"\xff\x01\x00\x50\x7f\x00\x00\x01"), ("127.0.0.1", 80)
        )

    def test_notAnAddress(self):
        """
        A host name is refused.
        """
        self.assertRaises(ValueError, encodeAddress, "example.com", 80)

    def test_bytesHost(self):
        """
        A host given as bytes is refused rather than taken as packed.
        """
        self.assertRaises(TypeError, encodeAddress, b"\x7f\x00\x00\x01", 80)

    def test_portTooLarge(self):
        """
        A port above 65535 is refused.
        """
        self.assertRaises(ValueError, encodeAddress, "127.0.0.1", 65536)

    def test_negativePort(self):
        """
        A negative port is refused.
        """
        self.assertRaises(
            ValueError, encodeXorAddress, "127.0.0.1", -1, self.transactionID
        )

    def test_badFamily(self):
        """
        An unknown family is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x00\x00\x50" + bytes(4))

    def test_tooShort(self):
        """
        A value shorter than family and port is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x01\x00")

    def test_ipv6WrongLength(self):
        """
        An IPv6 value with 4 address bytes is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x02\x00\x50" + bytes(4))

    def test_ipv4WrongLength(self):
        """
        An IPv4 value with 16 address bytes is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeAddress, b"\x00\x01\x00\x50" + bytes(16))

    def test_xorBadFamily(self):
        """
        An XOR address with an unknown family is a bad attribute.
        """
        self.assertRaises(
            BadAttribute,
            decodeXorAddress,
            b"\x00\x03\x00\x50" + bytes(4),
            self.transactionID,
        )

    def test_xorIPv4(self):
        """
        An IPv4 XOR address masks the port and address with the cookie.
        """
        self.assertEqual(
            encodeXorAddress("0.0.0.0", 0, self.transactionID),
            b"\x00\x01" + COOKIE[:2] + COOKIE,
        )

    def test_xorIPv6(self):
        """
        An IPv6 XOR address masks the address with cookie and transaction ID.
        """
        self.assertEqual(
            encodeXorAddress("::", 0, self.transactionID),
            b"\x00\x02" + COOKIE[:2] + COOKIE + self.transactionID,
        )

    def test_xorClassic(self):
        """
        With a classic 16-byte transaction ID the mask is that ID.
        """
        transactionID = bytes(range(1, 17))
        self.assertEqual(
            encodeXorAddress("::", 0, transactionID),
            b"\x00\x02" + transactionID[:2] + transactionID,
        )

    def test_xorBadTransactionID(self):
        """
        A transaction ID of the wrong length is refused.
        """
        self.assertRaises(ValueError, encodeXorAddress, "127.0.0.1", 80, bytes(8))

    def test_xorDecodeBadTransactionID(self):
        """
        Decoding with a transaction ID of the wrong length is refused.
        """
        value = encodeXorAddress("127.0.0.1", 80, self.transactionID)
        self.assertRaises(ValueError, decodeXorAddress, value, bytes(8))

    @FUZZ
    @given(st.ip_addresses(), st.integers(0, 65535))
    def test_property(self, address, port):
        """
        Any address and port round trip.
        """
        self.assertEqual(
            decodeAddress(encodeAddress(str(address), port)), (str(address), port)
        )

    @FUZZ
    @given(st.ip_addresses(), st.integers(0, 65535), transactionIDs)
    def test_xorProperty(self, address, port, transactionID):
        """
        Any address and port round trip through XOR encoding.
        """
        value = encodeXorAddress(str(address), port, transactionID)
        self.assertEqual(decodeXorAddress(value, transactionID), (str(address), port))

    @FUZZ
    @given(st.binary(max_size=24), transactionIDs)
    def test_fuzz(self, value, transactionID):
        """
        Arbitrary values decode or raise L{BadAttribute}, nothing else.
        """
        for decoder in [decodeAddress, lambda v: decodeXorAddress(v, transactionID)]:
            try:
                decoder(value)
            except BadAttribute:
                pass


class ErrorCodeTests(SynchronousTestCase):
    """
    Tests for L{encodeErrorCode} and L{decodeErrorCode}.
    """

    def test_encode(self):
        """
        401 encodes as class 4, number 1, then the reason.
        """
        self.assertEqual(
            encodeErrorCode(401, "Unauthorized"), b"\x00\x00\x04\x01Unauthorized"
        )

    def test_decode(self):
        """
        A value decodes to code and reason.
        """
        self.assertEqual(
            decodeErrorCode(b"\x00\x00\x04\x14Unknown Attribute"),
            (420, "Unknown Attribute"),
        )

    def test_unicodeReason(self):
        """
        A non-ASCII reason round trips through UTF-8.
        """
        self.assertEqual(
            decodeErrorCode(encodeErrorCode(500, "d\u00e9j\u00e0 vu")),
            (500, "d\u00e9j\u00e0 vu"),
        )

    def test_reservedBitsIgnored(self):
        """
        Reserved bits above the class are ignored.
        """
        self.assertEqual(decodeErrorCode(b"\xff\xff\xfc\x00"), (400, ""))

    def test_encodeCodeTooSmall(self):
        """
        A code below 300 is refused.
        """
        self.assertRaises(ValueError, encodeErrorCode, 299, "")

    def test_encodeCodeTooLarge(self):
        """
        A code above 699 is refused.
        """
        self.assertRaises(ValueError, encodeErrorCode, 700, "")

    def test_encodeReasonTooLong(self):
        """
        A reason of 128 characters is refused.
        """
        self.assertRaises(ValueError, encodeErrorCode, 400, "x" * 128)

    def test_decodeShort(self):
        """
        A value shorter than 4 bytes is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeErrorCode, b"\x00\x00\x04")

    def test_decodeNumberTooLarge(self):
        """
        A number above 99 is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeErrorCode, b"\x00\x00\x04\x64")

    def test_decodeClassTooSmall(self):
        """
        A class below 3 is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeErrorCode, b"\x00\x00\x02\x00")

    def test_decodeClassTooLarge(self):
        """
        A class above 6 is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeErrorCode, b"\x00\x00\x07\x00")

    def test_decodeBadUTF8(self):
        """
        A reason that is not UTF-8 is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeErrorCode, b"\x00\x00\x04\x00\xff")

    def test_decodeReasonTooLong(self):
        """
        A reason longer than 763 bytes is a bad attribute.
        """
        self.assertRaises(
            BadAttribute, decodeErrorCode, b"\x00\x00\x04\x00" + b"x" * 764
        )

    @FUZZ
    @given(st.integers(300, 699), st.text(max_size=127))
    def test_property(self, code, reason):
        """
        Any code and reason round trip.
        """
        self.assertEqual(decodeErrorCode(encodeErrorCode(code, reason)), (code, reason))

    @FUZZ
    @given(st.binary(max_size=16))
    def test_fuzz(self, value):
        """
        Arbitrary values decode or raise L{BadAttribute}, nothing else.
        """
        try:
            decodeErrorCode(value)
        except BadAttribute:
            pass

    def test_inMessage(self):
        """
        An error response carries its ERROR-CODE through a round trip.
        """
        message = Message(
            BINDING,
            ERROR,
            newTransactionID(),
            ((ERROR_CODE, encodeErrorCode(400, "Bad")),),
        )
        self.assertEqual(
            decodeErrorCode(decode(encode(message)).get(ERROR_CODE)), (400, "Bad")
        )


class ChangeRequestTests(SynchronousTestCase):
    """
    Tests for L{encodeChangeRequest} and L{decodeChangeRequest}.
    """

    def test_encode(self):
        """
        The flags are bits 0x04 (IP) and 0x02 (port) of a 4-byte value.
        """
        self.assertEqual(
            [
                encodeChangeRequest(False, False),
                encodeChangeRequest(True, False),
                encodeChangeRequest(False, True),
                encodeChangeRequest(True, True),
            ],
            [
                b"\x00\x00\x00\x00",
                b"\x00\x00\x00\x04",
                b"\x00\x00\x00\x02",
                b"\x00\x00\x00\x06",
            ],
        )

    def test_roundTrip(self):
        """
        Every combination of flags round trips.
        """
        combinations = [(a, b) for a in (False, True) for b in (False, True)]
        self.assertEqual(
            [decodeChangeRequest(encodeChangeRequest(*c)) for c in combinations],
            combinations,
        )

    def test_unknownBitsIgnored(self):
        """
        Bits other than the two flags are ignored.
        """
        self.assertEqual(decodeChangeRequest(b"\xff\xff\xff\xf9"), (False, False))

    def test_wrongLength(self):
        """
        A value that is not 4 bytes is a bad attribute.
        """
        self.assertRaises(BadAttribute, decodeChangeRequest, b"\x00\x00\x06")


class FuzzTests(SynchronousTestCase):
    """
    L{decode} raises nothing but L{StunError} on hostile input.
    """

    @FUZZ
    @given(st.binary(max_size=128))
    def test_arbitraryBytes(self, data):
        """
        Arbitrary bytes decode or raise a L{StunError}.
        """
        try:
            decode(data)
        except StunError:
            pass

    @FUZZ
    @given(st.binary(max_size=96).map(lambda b: b[: len(b) - len(b) % 4]))
    def test_framedBytes(self, body):
        """
        Arbitrary attribute bytes behind a valid header decode or raise a
        L{StunError}.
        """
        data = struct.pack("!HHI", 0x0001, len(body), MAGIC_COOKIE) + bytes(12) + body
        try:
            decode(data)
        except StunError:
            pass

    @FUZZ
    @given(
        messages,
        st.one_of(st.none(), keys),
        st.booleans(),
        st.lists(
            st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=4
        ),
        st.integers(-8, 8),
    )
    def test_mutatedMessages(self, message, key, fingerprint, changes, resize):
        """
        Valid messages with bytes changed and the end cut or extended decode
        or raise a L{StunError}.
        """
        data = bytearray(encode(message, key, fingerprint))
        for position, byte in changes:
            if position < len(data):
                data[position] = byte
        if resize < 0:
            del data[resize:]
        else:
            data += bytes(resize)
        try:
            decode(bytes(data))
        except StunError:
            pass
        self.assertIsInstance(verifyIntegrity(bytes(data), b"key"), bool)


class ModuleTests(SynchronousTestCase):
    """
    Tests for the module as a whole.
    """

    def test_allDefined(self):
        """
        Every name in C{__all__} is defined.
        """
        self.assertEqual([n for n in stun.__all__ if not hasattr(stun, n)], [])


class EncodeAttributesTests(SynchronousTestCase):
    """
    Tests for L{stun.encodeAttributes} and L{stun.attribute}, the fast
    path for messages made per datagram.
    """

    @FUZZ
    @given(messages, st.booleans())
    def test_sameAsEncode(self, message, fingerprint):
        """
        A message from encoded attributes is the same bytes as L{encode}
        makes of it.
        """
        self.assertEqual(
            stun.encodeAttributes(
                message.method,
                message.messageClass,
                message.transactionID,
                b"".join(stun.attribute(t, v) for t, v in message.attributes),
                fingerprint,
            ),
            encode(message, fingerprint=fingerprint),
        )

    def test_attributePadded(self):
        """
        An attribute is its header, its value and zeroes to a multiple of 4.
        """
        self.assertEqual(stun.attribute(0x8022, b"abcde"), b"\x80\x22\x00\x05abcde\x00\x00\x00")

    def test_attributeTooLong(self):
        """
        A value too long for the length field is refused.
        """
        self.assertRaises(ValueError, stun.attribute, 0x8022, bytes(0x10000))

    def test_badHeader(self):
        """
        A method, class or transaction ID out of range is refused as
        L{encode} refuses it.
        """
        for method, messageClass, txid in [
            (0x1000, REQUEST, bytes(12)),
            (BINDING, 4, bytes(12)),
            (BINDING, REQUEST, bytes(13)),
            (BINDING, REQUEST, COOKIE + bytes(12)),
        ]:
            self.assertRaises(ValueError, stun.encodeAttributes, method, messageClass, txid, b"")
            self.assertRaises(
                ValueError, encode, Message(method, messageClass, txid)
            )

    def test_tooLong(self):
        """
        Attributes too long for the length field are refused.
        """
        self.assertRaises(
            ValueError,
            stun.encodeAttributes,
            BINDING,
            REQUEST,
            bytes(12),
            bytes(0xFFFC),
            True,
        )


class XorAddressFastPathTests(SynchronousTestCase):
    """
    IPv4 addresses in RFC 8489 messages take a shorter path through
    L{encodeXorAddress} and L{decodeXorAddress}; it gives the same answers.
    """

    @FUZZ
    @given(st.ip_addresses(v=4), st.integers(0, 0xFFFF), st.binary(min_size=12, max_size=12))
    def test_roundTrip(self, host, port, txid):
        """
        What is encoded decodes to the same canonical address and port, and
        the value is the address and port masked with the cookie.
        """
        value = encodeXorAddress(str(host), port, txid)
        self.assertEqual(
            value,
            struct.pack(
                "!BBHI", 0, 1, port ^ (MAGIC_COOKIE >> 16), int(host) ^ MAGIC_COOKIE
            ),
        )
        self.assertEqual(decodeXorAddress(value, txid), (str(host), port))

    def test_loneIPv4FormsRefused(self):
        """
        Shorthand IPv4 forms that C{inet_aton} would take are still refused.
        """
        for host in ("127.1", "1", "0x7f.0.0.1"):
            self.assertRaises(ValueError, encodeXorAddress, host, 1, bytes(12))

    def test_badPort(self):
        """
        A port out of range is refused.
        """
        self.assertRaises(ValueError, encodeXorAddress, "192.0.2.1", 65536, bytes(12))
        self.assertRaises(ValueError, encodeXorAddress, "192.0.2.1", -1, bytes(12))


SIGNING_KEY = bytes(range(32))

#: Attribute types for made-up messages, with the value length each must
#: have, if any: the integrity attributes among the others, where decode()
#: honours or ignores them.
_SIGNED_TYPES = {
    USERNAME: None,
    SOFTWARE: None,
    XOR_MAPPED_ADDRESS: None,
    0xC001: None,
    ICE_CONTROLLED: None,
    MESSAGE_INTEGRITY: 20,
    MESSAGE_INTEGRITY_SHA256: 32,
}


@st.composite
def encodedMessages(draw):
    """
    Datagrams as encode() makes them, with or without its three trailing
    attributes, and sometimes with padding that is not zero.
    """
    classic = draw(st.booleans())
    if classic:
        txid = draw(st.binary(min_size=16, max_size=16).filter(lambda t: t[:4] != COOKIE))
    else:
        txid = draw(st.binary(min_size=12, max_size=12))
    attributes = []
    for attrType in draw(st.lists(st.sampled_from(sorted(_SIGNED_TYPES)), max_size=6)):
        size = _SIGNED_TYPES[attrType]
        if size is None:
            value = draw(st.binary(max_size=40))
        else:
            value = draw(st.binary(min_size=size, max_size=size))
        attributes.append((attrType, value))
    message = Message(
        draw(st.integers(0, 0xFFF)), draw(st.integers(0, 3)), txid, tuple(attributes)
    )
    options = draw(
        st.fixed_dictionaries(
            {
                "integrityKey": st.none() | st.just(b"sha1 key"),
                "integritySHA256Key": st.none() | st.just(b"old sha256 key"),
                "fingerprint": st.booleans(),
            }
        )
    )
    datagram = encode(message, **options)
    if not any(options.values()) and draw(st.booleans()):
        # Padding of any value, which decode() accepts and encode() zeroes.
        padded = bytearray(datagram)
        offset = 20
        while offset < len(padded):
            length = struct.unpack_from("!H", padded, offset + 2)[0]
            end = offset + 4 + length
            offset = (end + 3) & ~3
            padded[end:offset] = b"\x20" * (offset - end)
        datagram = bytes(padded)
    return datagram


class AddIntegritySHA256Tests(SynchronousTestCase):
    """
    L{addIntegritySHA256} signs an encoded message as decoding and encoding
    it again would.
    """

    def assertSameAsReencoding(self, datagram):
        self.assertEqual(
            addIntegritySHA256(datagram, SIGNING_KEY),
            encode(decode(datagram), integritySHA256Key=SIGNING_KEY, fingerprint=True),
        )

    @settings(max_examples=500, deadline=None)
    @given(encodedMessages())
    def test_sameAsReencoding(self, datagram):
        """
        For any message encode() makes, the bytes are those of encode() of
        the decoded message with the key and FINGERPRINT.
        """
        try:
            decode(datagram)
        except StunError:
            # A FINGERPRINT or MESSAGE-INTEGRITY out of place, which there
            # is nothing to compare with.
            return
        self.assertSameAsReencoding(datagram)

    def test_rfc5769Samples(self):
        """
        The RFC 5769 samples, with MESSAGE-INTEGRITY, FINGERPRINT and
        padding of spaces, are signed as re-encoding them signs them.
        """
        for sample in (
            SAMPLE_REQUEST,
            SAMPLE_IPV4_RESPONSE,
            SAMPLE_IPV6_RESPONSE,
            SAMPLE_LONG_TERM_REQUEST,
        ):
            self.assertSameAsReencoding(sample)

    def test_verifies(self):
        """
        The signed message verifies with the key and ends with a good
        FINGERPRINT.
        """
        signed = addIntegritySHA256(SAMPLE_IPV4_RESPONSE, SIGNING_KEY)
        self.assertTrue(verifyIntegritySHA256(signed, SIGNING_KEY))
        self.assertFalse(verifyIntegritySHA256(signed, bytes(32)))
        self.assertEqual(decode(signed).attributes[-1][0], FINGERPRINT)

    def test_bytesLike(self):
        """
        A bytes-like datagram is signed as its bytes are.
        """
        self.assertEqual(
            addIntegritySHA256(memoryview(SAMPLE_REQUEST), SIGNING_KEY),
            addIntegritySHA256(SAMPLE_REQUEST, SIGNING_KEY),
        )

    def test_badFraming(self):
        """
        A datagram not framed as a STUN message is refused with
        L{MalformedMessage}.
        """
        header = SAMPLE_REQUEST[:20]
        for datagram in (
            b"",
            header[:19],
            SAMPLE_REQUEST[:-4],
            header[:2] + b"\x00\x04" + header[4:] + b"\x80\x22\x00\x10",
        ):
            self.assertRaises(MalformedMessage, addIntegritySHA256, datagram, SIGNING_KEY)

    def test_tooLong(self):
        """
        A message too long for its length field once signed is refused, as
        encode() refuses it.
        """
        datagram = encode(
            Message(BINDING, REQUEST, SAMPLE_TRANSACTION_ID, ((SOFTWARE, bytes(65500)),))
        )
        for sign in (
            lambda: encode(decode(datagram), integritySHA256Key=SIGNING_KEY, fingerprint=True),
            lambda: addIntegritySHA256(datagram, SIGNING_KEY),
        ):
            self.assertRaises(ValueError, sign)
