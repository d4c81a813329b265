# -*- test-case-name: punchd.test.test_stun -*-
"""
A pure codec for STUN messages (RFC 8489), with no I/O.

L{decode} turns a datagram into a L{Message} and L{encode} turns a
L{Message} back into a datagram, optionally appending MESSAGE-INTEGRITY,
MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.  Attribute values are kept as raw
bytes; the C{decode*} and C{encode*} helpers convert the common ones when a
caller actually needs them, so the per-datagram cost of L{decode} is one pass
over the attribute headers.

Classic RFC 3489 messages, which have no magic cookie, are accepted too: their
transaction ID is the 16 bytes that follow the length field.

Every decoding failure raises a subclass of L{StunError}, itself a
L{ValueError}, so a server can drop bad datagrams with one C{except} clause.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import struct
from binascii import crc32
from dataclasses import dataclass
from socket import AF_INET, AF_INET6, inet_ntoa, inet_pton

__all__ = [
    "MAGIC_COOKIE",
    "REQUEST",
    "INDICATION",
    "SUCCESS",
    "ERROR",
    "BINDING",
    "MAPPED_ADDRESS",
    "CHANGE_REQUEST",
    "USERNAME",
    "MESSAGE_INTEGRITY",
    "ERROR_CODE",
    "UNKNOWN_ATTRIBUTES",
    "REALM",
    "NONCE",
    "MESSAGE_INTEGRITY_SHA256",
    "XOR_MAPPED_ADDRESS",
    "SOFTWARE",
    "ALTERNATE_SERVER",
    "FINGERPRINT",
    "RESPONSE_ORIGIN",
    "OTHER_ADDRESS",
    "StunError",
    "NotStun",
    "MalformedMessage",
    "BadAttribute",
    "FingerprintMismatch",
    "Message",
    "newTransactionID",
    "looksLikeStun",
    "decode",
    "encode",
    "addIntegritySHA256",
    "attribute",
    "encodeAttributes",
    "verifyIntegrity",
    "verifyIntegritySHA256",
    "encodeAddress",
    "decodeAddress",
    "encodeXorAddress",
    "decodeXorAddress",
    "encodeErrorCode",
    "decodeErrorCode",
    "encodeChangeRequest",
    "decodeChangeRequest",
]


MAGIC_COOKIE = 0x2112A442
"""
The fixed value in bytes 4 to 8 of every RFC 5389/8489 message.
"""

REQUEST = 0
"""
Message class of a request.
"""

INDICATION = 1
"""
Message class of an indication.
"""

SUCCESS = 2
"""
Message class of a success response.
"""

ERROR = 3
"""
Message class of an error response.
"""

BINDING = 0x001
"""
The Binding method.
"""

MAPPED_ADDRESS = 0x0001
"""
Attribute type of MAPPED-ADDRESS; see L{decodeAddress}.
"""

CHANGE_REQUEST = 0x0003
"""
Attribute type of CHANGE-REQUEST (RFC 5780); see L{decodeChangeRequest}.
"""

USERNAME = 0x0006
"""
Attribute type of USERNAME (UTF-8 text).
"""

MESSAGE_INTEGRITY = 0x0008
"""
Attribute type of MESSAGE-INTEGRITY (HMAC-SHA1); see L{verifyIntegrity}.
"""

ERROR_CODE = 0x0009
"""
Attribute type of ERROR-CODE; see L{decodeErrorCode}.
"""

UNKNOWN_ATTRIBUTES = 0x000A
"""
Attribute type of UNKNOWN-ATTRIBUTES (a list of 16-bit attribute types).
"""

REALM = 0x0014
"""
Attribute type of REALM (UTF-8 text).
"""

NONCE = 0x0015
"""
Attribute type of NONCE.
"""

MESSAGE_INTEGRITY_SHA256 = 0x001C
"""
Attribute type of MESSAGE-INTEGRITY-SHA256; see L{verifyIntegritySHA256}.
"""

XOR_MAPPED_ADDRESS = 0x0020
"""
Attribute type of XOR-MAPPED-ADDRESS; see L{decodeXorAddress}.
"""

SOFTWARE = 0x8022
"""
Attribute type of SOFTWARE (UTF-8 text).
"""

ALTERNATE_SERVER = 0x8023
"""
Attribute type of ALTERNATE-SERVER; see L{decodeAddress}.
"""

FINGERPRINT = 0x8028
"""
Attribute type of FINGERPRINT (CRC-32 of the message XOR 0x5354554E).
"""

RESPONSE_ORIGIN = 0x802B
"""
Attribute type of RESPONSE-ORIGIN (RFC 5780); see L{decodeAddress}.
"""

OTHER_ADDRESS = 0x802C
"""
Attribute type of OTHER-ADDRESS (RFC 5780); see L{decodeAddress}.
"""

PADDING = 0x0026
"""
Attribute type of PADDING (RFC 5780): bytes whose only job is to make the
message longer.
"""


_HEADER_LENGTH = 20
_LENGTH_OFFSET = 2
_COOKIE_OFFSET = 4
_TRANSACTION_ID_OFFSET = 8
_ATTRIBUTE_HEADER_LENGTH = 4
_TRANSACTION_ID_LENGTH = 12
_CLASSIC_TRANSACTION_ID_LENGTH = 16
_MAX_LENGTH = 0xFFFF
_MAX_METHOD = 0xFFF
_MAX_CLASS = ERROR
# RFC 8489 5: the 14-bit message type interleaves the class bits with the
# method bits, from the top: M11-M7 C1 M6-M4 C0 M3-M0.  So on the wire M6-M4
# move up by 1, M11-M7 by 2, C0 sits at bit 4 and C1 at bit 8.
_METHOD_LOW = 0x000F
_METHOD_MIDDLE = 0x0070
_METHOD_HIGH = 0x0F80
_CLASS_LOW = 0x1
_CLASS_HIGH = 0x2
# The two most significant bits of every STUN message are zero (RFC 8489 5).
_TOP_BITS = 0xC000
# RFC 7983 demultiplexing: a first byte of 0 to 3 means STUN.
_MAX_FIRST_BYTE = 3
_ALIGNMENT_MASK = 3
_PADDING = (b"", b"\x00\x00\x00", b"\x00\x00", b"\x00")

_FINGERPRINT_XOR = 0x5354554E
_FINGERPRINT_LENGTH = 4
_SHA1_LENGTH = 20
_SHA256_LENGTH = 32
_MIN_SHA256_LENGTH = 16
# RFC 3489 11.2.8 pads the HMAC input with zeroes to a multiple of 64 bytes.
_CLASSIC_HMAC_BLOCK = 64

_FAMILY_IPV4 = 0x01
_FAMILY_IPV6 = 0x02
_IPV4_LENGTH = 4
_IPV6_LENGTH = 16
_MIN_ADDRESS_VALUE_LENGTH = 4
_IPV4_VALUE_LENGTH = _MIN_ADDRESS_VALUE_LENGTH + _IPV4_LENGTH
_IPV6_VALUE_LENGTH = _MIN_ADDRESS_VALUE_LENGTH + _IPV6_LENGTH
_MAX_PORT = 0xFFFF
# XOR-MAPPED-ADDRESS masks with the 128 bits from byte 4 of the header: the
# port with the top 16, an IPv4 address with the top 32, IPv6 with all.
_XOR_COOKIE = MAGIC_COOKIE << 96
_XOR_PORT_SHIFT = 112
_XOR_IPV4_SHIFT = 96
_COOKIE_PORT = MAGIC_COOKIE >> 16

_ERROR_CODE_HEADER_LENGTH = 4
_ERROR_CLASS_MASK = 0x07
_MIN_ERROR_CODE = 300
_MAX_ERROR_CODE = 699
_MAX_ERROR_NUMBER = 99
_MAX_REASON_CHARACTERS = 127
_MAX_REASON_BYTES = 763

_CHANGE_REQUEST_LENGTH = 4
_CHANGE_IP = 0x04
_CHANGE_PORT = 0x02

_UINT16 = struct.Struct("!H")
_UINT16_PAIR = struct.Struct("!HH")
_UINT32 = struct.Struct("!I")
_HEADER = struct.Struct("!HHI")
_IPV4_VALUE = struct.Struct("!xBHI")
_PORT_VALUE = struct.Struct("!xBH")
_ERROR_CODE_VALUE = struct.Struct("!HBB")
_COOKIE_BYTES = _UINT32.pack(MAGIC_COOKIE)

_MESSAGE_INTEGRITY_HEADER = _UINT16_PAIR.pack(MESSAGE_INTEGRITY, _SHA1_LENGTH)
_MESSAGE_INTEGRITY_SHA256_HEADER = _UINT16_PAIR.pack(
    MESSAGE_INTEGRITY_SHA256, _SHA256_LENGTH
)
_FINGERPRINT_HEADER = _UINT16_PAIR.pack(FINGERPRINT, _FINGERPRINT_LENGTH)
_MESSAGE_INTEGRITY_SIZE = _ATTRIBUTE_HEADER_LENGTH + _SHA1_LENGTH
_MESSAGE_INTEGRITY_SHA256_SIZE = _ATTRIBUTE_HEADER_LENGTH + _SHA256_LENGTH
_FINGERPRINT_SIZE = _ATTRIBUTE_HEADER_LENGTH + _FINGERPRINT_LENGTH

# Attributes that encode() drops from a message because it is about to append
# a fresh one that must come before (or replace) them.
_REPLACED_BY_INTEGRITY = frozenset(
    {MESSAGE_INTEGRITY, MESSAGE_INTEGRITY_SHA256, FINGERPRINT}
)
_REPLACED_BY_INTEGRITY_SHA256 = frozenset({MESSAGE_INTEGRITY_SHA256, FINGERPRINT})
_REPLACED_BY_FINGERPRINT = frozenset({FINGERPRINT})
_REPLACED_BY_NOTHING: frozenset[int] = frozenset()

# What decode() has seen so far: which attributes it still honours.
_BEFORE_INTEGRITY = 0
_AFTER_INTEGRITY = 1
_AFTER_INTEGRITY_SHA256 = 2


class StunError(ValueError):
    """
    A datagram could not be decoded as STUN, or an attribute value could not
    be decoded.  Every decoding error raised by this module is an instance of
    a subclass of this.
    """


class NotStun(StunError):
    """
    The datagram is not a STUN message at all: it is shorter than a STUN
    header, the two most significant bits are not zero, or its length field
    is not a multiple of 4.
    """


class MalformedMessage(StunError):
    """
    The datagram starts like a STUN message but its framing is broken: the
    length field disagrees with the datagram size, or an attribute runs past
    the end of the message.
    """


class BadAttribute(StunError):
    """
    An attribute value cannot be decoded: an address with an unknown family
    or the wrong length, an error code out of range, a MESSAGE-INTEGRITY of
    the wrong length, and so on.
    """


class FingerprintMismatch(StunError):
    """
    A FINGERPRINT attribute is present but is not the last attribute, has the
    wrong length, or does not match the message.
    """


@dataclass(frozen=True, slots=True)
class Message:
    """
    One STUN message.

    Attribute values are raw bytes without padding, in wire order.  When
    L{decode} produces a message, its attributes include any
    MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, so a caller
    can tell whether the sender included them; attributes that RFC 8489 says
    to ignore (those after the integrity attributes) are left out.

    @ivar method: The 12-bit method, such as L{BINDING}.
    @type method: L{int}

    @ivar messageClass: One of L{REQUEST}, L{INDICATION}, L{SUCCESS} or
        L{ERROR}.
    @type messageClass: L{int}

    @ivar transactionID: 12 bytes for an RFC 5389/8489 message, or 16 bytes
        for a classic RFC 3489 message (which has no magic cookie: the first 4
        of the 16 bytes sit where the cookie would be, so they must not equal
        it).
    @type transactionID: L{bytes}

    @ivar attributes: C{(type, value)} pairs in wire order.
    @type attributes: L{tuple} of L{tuple} of (L{int}, L{bytes})
    """

    method: int
    messageClass: int
    transactionID: bytes
    attributes: tuple[tuple[int, bytes], ...] = ()

    def __init__(
        self,
        method: int,
        messageClass: int,
        transactionID: bytes,
        attributes: tuple[tuple[int, bytes], ...] = (),
    ):
        # A Message is made for every datagram sent or received.  The
        # __init__ a frozen dataclass gets sets each field through
        # object.__setattr__; setting the slots directly does the same at
        # half the cost.
        _setMethod(self, method)
        _setMessageClass(self, messageClass)
        _setTransactionID(self, transactionID)
        _setAttributes(self, attributes)

    @property
    def classic(self) -> bool:
        """
        Whether this is a classic RFC 3489 message, that is, one with a
        16-byte transaction ID and no magic cookie.
        """
        return len(self.transactionID) == _CLASSIC_TRANSACTION_ID_LENGTH

    def get(self, attrType: int) -> bytes | None:
        """
        Find the value of the first attribute of a type.

        @param attrType: The attribute type, such as L{XOR_MAPPED_ADDRESS}.

        @return: The value of the first attribute of that type, or L{None} if
            there is none.
        """
        for eachType, value in self.attributes:
            if eachType == attrType:
                return value
        return None

    def getAll(self, attrType: int) -> list[bytes]:
        """
        Find the values of every attribute of a type.

        @param attrType: The attribute type, such as L{USERNAME}.

        @return: The values of all attributes of that type, in wire order;
            empty if there are none.
        """
        return [value for eachType, value in self.attributes if eachType == attrType]


_setMethod = Message.method.__set__  # type: ignore[attr-defined]
_setMessageClass = Message.messageClass.__set__  # type: ignore[attr-defined]
_setTransactionID = Message.transactionID.__set__  # type: ignore[attr-defined]
_setAttributes = Message.attributes.__set__  # type: ignore[attr-defined]


def _methodAndClass(messageType: int) -> tuple[int, int]:
    return (
        (messageType & _METHOD_LOW)
        | ((messageType >> 1) & _METHOD_MIDDLE)
        | ((messageType >> 2) & _METHOD_HIGH),
        ((messageType >> 4) & _CLASS_LOW) | ((messageType >> 7) & _CLASS_HIGH),
    )


# The message types of the methods below 0x100 (STUN's, TURN's and
# punchd's), split into method and class once, at import.
_METHOD_AND_CLASS = {
    t: _methodAndClass(t)
    for t in range(_TOP_BITS >> 2)
    if _methodAndClass(t)[0] < 0x100
}
_MESSAGE_TYPES = {methodAndClass: t for t, methodAndClass in _METHOD_AND_CLASS.items()}


def newTransactionID() -> bytes:
    """
    Make a fresh RFC 8489 transaction ID.

    @return: 12 cryptographically random bytes.
    """
    return os.urandom(_TRANSACTION_ID_LENGTH)


def looksLikeStun(data: bytes) -> bool:
    """
    Cheaply guess whether a datagram is a STUN message, without decoding it.

    The first byte must be 0 to 3 (RFC 7983 demultiplexing), the datagram at
    least as long as a STUN header, and the length field a multiple of 4 that
    accounts for exactly the rest of the datagram.  This never raises for a
    bytes-like C{data}.

    @param data: A datagram.

    @return: L{True} if C{data} passes those checks.
    """
    size = len(data)
    return (
        size >= _HEADER_LENGTH
        and data[0] <= _MAX_FIRST_BYTE
        and not data[3] & _ALIGNMENT_MASK
        and ((data[2] << 8) | data[3]) == size - _HEADER_LENGTH
    )


def decode(data: bytes) -> Message:
    """
    Decode a datagram into a L{Message}.

    Everything structural is checked: header, length field, attribute
    framing, and FINGERPRINT (which must be last and correct if present).
    Padding bytes may hold any value.  Attributes after MESSAGE-INTEGRITY
    other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, and attributes after
    MESSAGE-INTEGRITY-SHA256 other than FINGERPRINT, are left out, as RFC 8489
    sections 14.5 and 14.6 say.  Integrity is not checked, since that needs a
    key: see L{verifyIntegrity} and L{verifyIntegritySHA256}.

    A message without the magic cookie is taken to be a classic RFC 3489
    message with a 16-byte transaction ID.

    @param data: A datagram.
    @type data: L{bytes} (other bytes-like objects are copied to L{bytes})

    @return: The decoded message.

    @raise NotStun: If C{data} is not STUN at all.
    @raise MalformedMessage: If the length field or the attribute framing is
        wrong.
    @raise BadAttribute: If MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256
        has an impossible length.
    @raise FingerprintMismatch: If FINGERPRINT is wrong or not last.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < _HEADER_LENGTH:
        raise NotStun(
            f"STUN messages are at least {_HEADER_LENGTH} bytes long, "
            f"this datagram is {size} bytes"
        )
    messageType, length, cookie = _HEADER.unpack_from(data)
    if messageType & _TOP_BITS:
        raise NotStun(
            f"the two most significant bits of a STUN message are zero, "
            f"here the first byte is 0x{data[0]:02x}"
        )
    if length & _ALIGNMENT_MASK:
        raise NotStun(f"the length field {length} is not a multiple of 4")
    if length != size - _HEADER_LENGTH:
        raise MalformedMessage(
            f"the length field says {length} bytes of attributes but the "
            f"datagram holds {size - _HEADER_LENGTH}"
        )
    if cookie == MAGIC_COOKIE:
        transactionID = data[_TRANSACTION_ID_OFFSET:_HEADER_LENGTH]
    else:
        transactionID = data[_COOKIE_OFFSET:_HEADER_LENGTH]

    if size == _HEADER_LENGTH:
        # A bare request, such as most STUN clients' Binding requests.
        known = _METHOD_AND_CLASS.get(messageType)
        method, messageClass = known or _methodAndClass(messageType)
        return Message(method, messageClass, transactionID, ())

    attributes = []
    append = attributes.append
    unpackAttributeHeader = _UINT16_PAIR.unpack_from
    state = _BEFORE_INTEGRITY
    offset = _HEADER_LENGTH
    # The length field is a multiple of 4 and so is every padded attribute,
    # so whenever offset < size there are at least 4 bytes of header left.
    while offset < size:
        attrType, attrLength = unpackAttributeHeader(data, offset)
        start = offset + _ATTRIBUTE_HEADER_LENGTH
        end = start + attrLength
        if end > size:
            raise MalformedMessage(
                f"attribute 0x{attrType:04x} at offset {offset} is "
                f"{attrLength} bytes long and runs {end - size} bytes past "
                f"the end of the message"
            )
        if attrType == FINGERPRINT:
            _checkFingerprint(data, offset, attrLength)
            append((attrType, data[start:end]))
            break
        if state == _BEFORE_INTEGRITY:
            if attrType == MESSAGE_INTEGRITY:
                _checkIntegrityLength(attrLength)
                state = _AFTER_INTEGRITY
            elif attrType == MESSAGE_INTEGRITY_SHA256:
                _checkIntegritySHA256Length(attrLength)
                state = _AFTER_INTEGRITY_SHA256
            append((attrType, data[start:end]))
        elif state == _AFTER_INTEGRITY and attrType == MESSAGE_INTEGRITY_SHA256:
            _checkIntegritySHA256Length(attrLength)
            state = _AFTER_INTEGRITY_SHA256
            append((attrType, data[start:end]))
        offset = start + ((attrLength + _ALIGNMENT_MASK) & ~_ALIGNMENT_MASK)

    known = _METHOD_AND_CLASS.get(messageType)
    method, messageClass = known or _methodAndClass(messageType)
    return Message(method, messageClass, transactionID, tuple(attributes))


def _checkFingerprint(data: bytes, offset: int, attrLength: int) -> None:
    """
    Check the FINGERPRINT attribute whose header starts at C{offset}.

    @raise FingerprintMismatch: If it has the wrong length, is not last, or
        does not match.
    """
    if attrLength != _FINGERPRINT_LENGTH:
        raise FingerprintMismatch(
            f"FINGERPRINT is {attrLength} bytes long, not {_FINGERPRINT_LENGTH}"
        )
    end = offset + _FINGERPRINT_SIZE
    if end != len(data):
        raise FingerprintMismatch(
            f"FINGERPRINT at offset {offset} is followed by "
            f"{len(data) - end} more bytes; it must be the last attribute"
        )
    (received,) = _UINT32.unpack_from(data, offset + _ATTRIBUTE_HEADER_LENGTH)
    expected = crc32(data[:offset]) ^ _FINGERPRINT_XOR
    if received != expected:
        raise FingerprintMismatch(
            f"FINGERPRINT is 0x{received:08x} but the message's is " f"0x{expected:08x}"
        )


def _checkIntegrityLength(attrLength: int) -> None:
    """
    Check the length of a MESSAGE-INTEGRITY value.

    @raise BadAttribute: If it is not the length of an HMAC-SHA1.
    """
    if attrLength != _SHA1_LENGTH:
        raise BadAttribute(
            f"MESSAGE-INTEGRITY is {attrLength} bytes long, not {_SHA1_LENGTH}"
        )


def _checkIntegritySHA256Length(attrLength: int) -> None:
    """
    Check the length of a MESSAGE-INTEGRITY-SHA256 value, which RFC 8489
    14.6 allows to be truncated to 16 bytes in steps of 4.

    @raise BadAttribute: If the length is impossible.
    """
    if (
        attrLength < _MIN_SHA256_LENGTH
        or attrLength > _SHA256_LENGTH
        or attrLength & _ALIGNMENT_MASK
    ):
        raise BadAttribute(
            f"MESSAGE-INTEGRITY-SHA256 is {attrLength} bytes long; it must be "
            f"a multiple of 4 from {_MIN_SHA256_LENGTH} to {_SHA256_LENGTH}"
        )


def _hmac(key: bytes, text: bytes, digest: str, classic: bool) -> bytes:
    """
    Compute the HMAC that a MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256
    attribute carries.

    @param key: The HMAC key.
    @param text: The message up to the integrity attribute, its length field
        already adjusted.
    @param digest: C{"sha1"} or C{"sha256"}.
    @param classic: Whether to pad C{text} with zeroes to a multiple of 64
        bytes, as RFC 3489 11.2.8 does for classic messages.

    @return: The full digest.
    """
    if classic:
        text += bytes(-len(text) % _CLASSIC_HMAC_BLOCK)
    return hmac.digest(key, text, digest)


def _header(method: int, messageClass: int, transactionID: bytes):
    """
    Check the fixed part of a message to encode.

    @return: The 14-bit message type; the 16 bytes that follow the length
        field (the cookie and the ID, or a classic ID); and whether the
        message is classic.

    @raise ValueError: As L{encode} says.
    """
    messageType = _MESSAGE_TYPES.get((method, messageClass))
    if messageType is None:
        if not 0 <= method <= _MAX_METHOD:
            raise ValueError(f"method 0x{method:x} does not fit in 12 bits")
        if not 0 <= messageClass <= _MAX_CLASS:
            raise ValueError(f"message class {messageClass} is not 0 to 3")
        messageType = (
            (method & _METHOD_LOW)
            | ((method & _METHOD_MIDDLE) << 1)
            | ((method & _METHOD_HIGH) << 2)
            | ((messageClass & _CLASS_LOW) << 4)
            | ((messageClass & _CLASS_HIGH) << 7)
        )
    idLength = len(transactionID)
    if idLength == _TRANSACTION_ID_LENGTH:
        return messageType, _COOKIE_BYTES + transactionID, False
    if idLength == _CLASSIC_TRANSACTION_ID_LENGTH:
        if transactionID.startswith(_COOKIE_BYTES):
            raise ValueError(
                "a classic 16-byte transaction ID cannot start with the magic "
                "cookie: it would decode as a 12-byte one"
            )
        return messageType, transactionID, True
    raise ValueError(
        f"transaction ID is {idLength} bytes, not "
        f"{_TRANSACTION_ID_LENGTH} or {_CLASSIC_TRANSACTION_ID_LENGTH}"
    )


def attribute(attrType: int, value: bytes) -> bytes:
    """
    Encode one attribute: its header, its value and the padding.

    For L{encodeAttributes}.

    @raise ValueError: If the type or the length does not fit in 16 bits.
    """
    attrLength = len(value)
    try:
        header = _UINT16_PAIR.pack(attrType, attrLength)
    except struct.error as e:
        raise ValueError(
            f"attribute type 0x{attrType:x} or its length {attrLength} does not "
            f"fit in 16 bits"
        ) from e
    return header + value + _PADDING[attrLength & _ALIGNMENT_MASK]


def encodeAttributes(
    method: int,
    messageClass: int,
    transactionID: bytes,
    attributes: bytes,
    fingerprint: bool = False,
) -> bytes:
    """
    Encode a message whose attributes are already encoded, each by
    L{attribute}: what L{encode} does for a L{Message} without integrity,
    with less work, for the messages a server makes per datagram.

    @param attributes: The attributes, concatenated, in wire order.
    @param fingerprint: Whether to add FINGERPRINT.

    @return: The datagram, the same bytes L{encode} makes of the same
        message.

    @raise ValueError: As L{encode} says.
    """
    messageType, transactionID, _ = _header(method, messageClass, transactionID)
    length = len(attributes)
    if fingerprint:
        length += _FINGERPRINT_SIZE
    if length > _MAX_LENGTH:
        raise ValueError(
            f"the attributes take {length} bytes, more than the length field "
            f"can hold ({_MAX_LENGTH})"
        )
    datagram = _UINT16_PAIR.pack(messageType, length) + transactionID + attributes
    if fingerprint:
        return (
            datagram
            + _FINGERPRINT_HEADER
            + _UINT32.pack(crc32(datagram) ^ _FINGERPRINT_XOR)
        )
    return datagram


def encode(
    message: Message,
    integrityKey: bytes | None = None,
    fingerprint: bool = False,
    integritySHA256Key: bytes | None = None,
) -> bytes:
    """
    Encode a L{Message} as a datagram.

    The header and the attributes are written in order, each value padded
    with zeroes to a multiple of 4 bytes.  Then, on request, these are
    appended in this order: MESSAGE-INTEGRITY (HMAC-SHA1 keyed with
    C{integrityKey}, RFC 8489 14.5), MESSAGE-INTEGRITY-SHA256 (the full
    32-byte HMAC-SHA256 keyed with C{integritySHA256Key}, RFC 8489 14.6) and
    FINGERPRINT.

    An attribute that is about to be appended replaces any of the same type
    already in C{message}, along with any that would otherwise end up after
    it out of order; so a decoded message can be re-signed with
    C{encode(decode(data), key, fingerprint=True)}.  Without any of the three
    options, the attributes are written exactly as given.

    For a classic message the 16-byte transaction ID takes the place of the
    cookie and ID, and MESSAGE-INTEGRITY is computed as RFC 3489 does, over
    the text padded with zeroes to a multiple of 64 bytes.

    @param message: The message to encode.
    @param integrityKey: The key for MESSAGE-INTEGRITY, or L{None} to add
        none.  For short-term credentials this is the password; for
        long-term ones, RFC 8489 9.2.2 derives it from username, realm and
        password.
    @param fingerprint: Whether to add FINGERPRINT.
    @param integritySHA256Key: The key for MESSAGE-INTEGRITY-SHA256, or
        L{None} to add none.

    @return: The datagram.

    @raise ValueError: If the method, class or transaction ID is out of
        range (including a classic transaction ID that starts with the magic
        cookie), or the message would be too long for its 16-bit length
        field.
    """
    messageType, transactionID, classic = _header(
        message.method, message.messageClass, message.transactionID
    )

    if integrityKey is not None:
        replaced = _REPLACED_BY_INTEGRITY
    elif integritySHA256Key is not None:
        replaced = _REPLACED_BY_INTEGRITY_SHA256
    elif fingerprint:
        replaced = _REPLACED_BY_FINGERPRINT
    else:
        replaced = _REPLACED_BY_NOTHING
    parts = []
    append = parts.append
    packAttributeHeader = _UINT16_PAIR.pack
    try:
        for attrType, value in message.attributes:
            if attrType in replaced:
                continue
            attrLength = len(value)
            append(packAttributeHeader(attrType, attrLength))
            append(value)
            append(_PADDING[attrLength & _ALIGNMENT_MASK])
    except struct.error as e:
        raise ValueError(
            f"attribute type 0x{attrType:x} or its length {attrLength} does not "
            f"fit in 16 bits"
        ) from e
    body = b"".join(parts)

    length = len(body)
    total = (
        length
        + (_MESSAGE_INTEGRITY_SIZE if integrityKey is not None else 0)
        + (_MESSAGE_INTEGRITY_SHA256_SIZE if integritySHA256Key is not None else 0)
        + (_FINGERPRINT_SIZE if fingerprint else 0)
    )
    if total > _MAX_LENGTH:
        raise ValueError(
            f"the attributes take {total} bytes, more than the length field "
            f"can hold ({_MAX_LENGTH})"
        )

    # Each integrity attribute covers the message as if it were the last
    # attribute, so the length field is rewritten at every step.
    if integrityKey is not None:
        length += _MESSAGE_INTEGRITY_SIZE
        mac = _hmac(
            integrityKey,
            _UINT16_PAIR.pack(messageType, length) + transactionID + body,
            "sha1",
            classic,
        )
        body += _MESSAGE_INTEGRITY_HEADER + mac
    if integritySHA256Key is not None:
        length += _MESSAGE_INTEGRITY_SHA256_SIZE
        mac = _hmac(
            integritySHA256Key,
            _UINT16_PAIR.pack(messageType, length) + transactionID + body,
            "sha256",
            False,
        )
        body += _MESSAGE_INTEGRITY_SHA256_HEADER + mac
    if fingerprint:
        length += _FINGERPRINT_SIZE
        datagram = _UINT16_PAIR.pack(messageType, length) + transactionID + body
        return (
            datagram
            + _FINGERPRINT_HEADER
            + _UINT32.pack(crc32(datagram) ^ _FINGERPRINT_XOR)
        )
    return _UINT16_PAIR.pack(messageType, length) + transactionID + body


def addIntegritySHA256(datagram: bytes, key: bytes) -> bytes:
    """
    Sign an encoded message with MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.

    The result is the bytes of C{encode(decode(datagram),
    integritySHA256Key=key, fingerprint=True)}, made without decoding:
    one pass over the attribute headers finds where the attributes that
    would be kept end (before a MESSAGE-INTEGRITY-SHA256 or FINGERPRINT,
    or after a MESSAGE-INTEGRITY, as L{decode} and L{encode} have it);
    the length field is rewritten and the two attributes appended.  For a
    sender that signs every datagram it has already encoded.

    @param datagram: A STUN message, such as L{encode} makes.  Nothing but
        its framing is checked: a datagram that L{decode} would refuse for
        its contents is signed all the same.
    @type datagram: L{bytes} (other bytes-like objects are copied to L{bytes})
    @param key: The key of MESSAGE-INTEGRITY-SHA256.

    @return: The signed datagram.

    @raise MalformedMessage: If C{datagram} is not framed as a STUN
        message: too short, a length field that is not its size, or an
        attribute that runs past its end.
    @raise ValueError: If the signed message would be too long for its
        length field.
    """
    if type(datagram) is not bytes:
        datagram = bytes(datagram)
    size = len(datagram)
    if (
        size < _HEADER_LENGTH
        or size & _ALIGNMENT_MASK
        or _UINT16.unpack_from(datagram, _LENGTH_OFFSET)[0] != size - _HEADER_LENGTH
    ):
        raise MalformedMessage(
            f"a datagram of {size} bytes whose length field does not count its"
            f" attributes is not an encoded STUN message"
        )
    unpackAttributeHeader = _UINT16_PAIR.unpack_from
    offset = _HEADER_LENGTH
    unpadded = []
    while offset < size:
        attrType, attrLength = unpackAttributeHeader(datagram, offset)
        if attrType == MESSAGE_INTEGRITY_SHA256 or attrType == FINGERPRINT:
            break
        end = offset + _ATTRIBUTE_HEADER_LENGTH + attrLength
        offset = (end + _ALIGNMENT_MASK) & ~_ALIGNMENT_MASK
        if offset > size:
            raise MalformedMessage(
                f"attribute 0x{attrType:04x} runs {offset - size} bytes past the end"
                f" of the message"
            )
        if end != offset and datagram[end:offset] != _PADDING[attrLength & _ALIGNMENT_MASK]:
            unpadded.append((end, offset))
        if attrType == MESSAGE_INTEGRITY:
            break
    body = datagram[_COOKIE_OFFSET:offset]
    if unpadded:
        # encode() pads with zeroes whatever the padding was.
        body = bytearray(body)
        for end, padded in unpadded:
            body[end - _COOKIE_OFFSET : padded - _COOKIE_OFFSET] = bytes(padded - end)
        body = bytes(body)
    length = offset - _HEADER_LENGTH + _MESSAGE_INTEGRITY_SHA256_SIZE
    if length + _FINGERPRINT_SIZE > _MAX_LENGTH:
        raise ValueError(
            f"the attributes take {length + _FINGERPRINT_SIZE} bytes, more than the"
            f" length field can hold ({_MAX_LENGTH})"
        )
    messageType = datagram[:_LENGTH_OFFSET]
    mac = hmac.digest(key, messageType + _UINT16.pack(length) + body, "sha256")
    signed = (
        messageType
        + _UINT16.pack(length + _FINGERPRINT_SIZE)
        + body
        + _MESSAGE_INTEGRITY_SHA256_HEADER
        + mac
    )
    return signed + _FINGERPRINT_HEADER + _UINT32.pack(crc32(signed) ^ _FINGERPRINT_XOR)


def _findIntegrity(data: bytes, wanted: int) -> int:
    """
    Find the integrity attribute that L{decode} would honour.

    @param data: A datagram, not yet known to be valid.
    @param wanted: L{MESSAGE_INTEGRITY} or L{MESSAGE_INTEGRITY_SHA256}.

    @return: The offset of the attribute's header, or -1 if there is none or
        the datagram's framing is broken before it.
    """
    size = len(data)
    if size < _HEADER_LENGTH:
        return -1
    messageType, length = _UINT16_PAIR.unpack_from(data)
    if (
        messageType & _TOP_BITS
        or length & _ALIGNMENT_MASK
        or length != size - _HEADER_LENGTH
    ):
        return -1
    unpackAttributeHeader = _UINT16_PAIR.unpack_from
    offset = _HEADER_LENGTH
    while offset < size:
        attrType, attrLength = unpackAttributeHeader(data, offset)
        start = offset + _ATTRIBUTE_HEADER_LENGTH
        if start + attrLength > size:
            return -1
        if attrType == wanted:
            return offset
        # Nothing after FINGERPRINT is valid, and MESSAGE-INTEGRITY after
        # MESSAGE-INTEGRITY-SHA256 is ignored.
        if attrType == FINGERPRINT or attrType == MESSAGE_INTEGRITY_SHA256:
            return -1
        offset = start + ((attrLength + _ALIGNMENT_MASK) & ~_ALIGNMENT_MASK)
    return -1


def _verify(data: bytes, key: bytes, wanted: int, digest: str) -> bool:
    """
    Verify the integrity attribute of type C{wanted} in a raw datagram.

    @param data: A datagram, not yet known to be valid.
    @param key: The HMAC key.
    @param wanted: L{MESSAGE_INTEGRITY} or L{MESSAGE_INTEGRITY_SHA256}.
    @param digest: C{"sha1"} or C{"sha256"} to go with C{wanted}.

    @return: L{True} if the attribute is present, well formed and correct.
    """
    if type(data) is not bytes:
        data = bytes(data)
    offset = _findIntegrity(data, wanted)
    if offset < 0:
        return False
    attrLength = _UINT16_PAIR.unpack_from(data, offset)[1]
    try:
        if wanted == MESSAGE_INTEGRITY:
            _checkIntegrityLength(attrLength)
        else:
            _checkIntegritySHA256Length(attrLength)
    except BadAttribute:
        return False
    start = offset + _ATTRIBUTE_HEADER_LENGTH
    end = start + attrLength
    classic = wanted == MESSAGE_INTEGRITY and not data.startswith(
        _COOKIE_BYTES, _COOKIE_OFFSET
    )
    text = (
        data[:_LENGTH_OFFSET]
        + _UINT16.pack(end - _HEADER_LENGTH)
        + data[_COOKIE_OFFSET:offset]
    )
    expected = _hmac(key, text, digest, classic)[:attrLength]
    return hmac.compare_digest(expected, data[start:end])


def verifyIntegrity(data: bytes, key: bytes) -> bool:
    """
    Check the MESSAGE-INTEGRITY (HMAC-SHA1) of a raw datagram.

    The HMAC is recomputed over the message up to the attribute, with the
    length field adjusted as RFC 8489 14.5 says (and, for a classic message,
    padded as RFC 3489 11.2.8 says), and compared in constant time.  A
    MESSAGE-INTEGRITY after MESSAGE-INTEGRITY-SHA256 is ignored, as L{decode}
    ignores it.  This never raises for a bytes-like C{data}.

    @param data: A datagram.
    @param key: The key: the password for short-term credentials.

    @return: L{True} if the attribute is present and correct; L{False} if it
        is absent, wrong, or the datagram is too broken to find it.
    """
    return _verify(data, key, MESSAGE_INTEGRITY, "sha1")


def verifyIntegritySHA256(data: bytes, key: bytes) -> bool:
    """
    Check the MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256) of a raw datagram.

    As L{verifyIntegrity}, following RFC 8489 14.6; a value truncated to 16
    to 28 bytes is compared with the same prefix of the HMAC.  This never
    raises for a bytes-like C{data}.

    @param data: A datagram.
    @param key: The key.

    @return: L{True} if the attribute is present and correct; L{False} if it
        is absent, wrong, or the datagram is too broken to find it.
    """
    return _verify(data, key, MESSAGE_INTEGRITY_SHA256, "sha256")


def _packHost(host: str) -> bytes:
    """
    Convert an IP address literal to its 4 or 16 packed bytes.

    @raise ValueError: If C{host} is not an IPv4 or IPv6 literal.
    @raise TypeError: If C{host} is not a L{str}.
    """
    # inet_pton is some 30 times faster than ipaddress; ipaddress still
    # handles what inet_pton refuses (IPv6 scope IDs) and words the error.
    for family in (AF_INET, AF_INET6):
        try:
            return inet_pton(family, host)
        except OSError:
            pass
    return ipaddress.ip_address(host).packed


def _checkPort(port: int) -> None:
    """
    @raise ValueError: If C{port} is not a valid UDP port number.
    """
    if not 0 <= port <= _MAX_PORT:
        raise ValueError(f"port {port} is not 0 to {_MAX_PORT}")


def _hostText(packed: bytes) -> str:
    """
    Convert 4 or 16 packed bytes to canonical IP address text.
    """
    if len(packed) == _IPV4_LENGTH:
        return "%d.%d.%d.%d" % (packed[0], packed[1], packed[2], packed[3])
    return str(ipaddress.IPv6Address(packed))


def _checkAddressValue(value: bytes) -> int:
    """
    Check the framing of a MAPPED-ADDRESS style value.

    @return: The address family.

    @raise BadAttribute: If the family is unknown or the length is wrong
        for it.
    """
    valueLength = len(value)
    if valueLength < _MIN_ADDRESS_VALUE_LENGTH:
        raise BadAttribute(
            f"address value is {valueLength} bytes, shorter than the "
            f"{_MIN_ADDRESS_VALUE_LENGTH}-byte family and port"
        )
    family = value[1]
    if family == _FAMILY_IPV4:
        expected = _IPV4_VALUE_LENGTH
    elif family == _FAMILY_IPV6:
        expected = _IPV6_VALUE_LENGTH
    else:
        raise BadAttribute(f"address family 0x{family:02x} is not IPv4 or IPv6")
    if valueLength != expected:
        raise BadAttribute(
            f"address value of family {family} is {valueLength} bytes, "
            f"not {expected}"
        )
    return family


def _xorMask(transactionID: bytes) -> int:
    """
    The 128-bit mask of XOR-MAPPED-ADDRESS: the magic cookie and the
    transaction ID, or a classic message's 16-byte transaction ID, which sits
    in the same place.

    @raise ValueError: If C{transactionID} is not 12 or 16 bytes.
    """
    idLength = len(transactionID)
    if idLength == _TRANSACTION_ID_LENGTH:
        return _XOR_COOKIE | int.from_bytes(transactionID, "big")
    if idLength == _CLASSIC_TRANSACTION_ID_LENGTH:
        return int.from_bytes(transactionID, "big")
    raise ValueError(
        f"transaction ID is {idLength} bytes, not "
        f"{_TRANSACTION_ID_LENGTH} or {_CLASSIC_TRANSACTION_ID_LENGTH}"
    )


def encodeAddress(host: str, port: int) -> bytes:
    """
    Encode a MAPPED-ADDRESS style value (also used by ALTERNATE-SERVER,
    RESPONSE-ORIGIN and OTHER-ADDRESS).

    @param host: An IPv4 or IPv6 address literal.
    @param port: A port number.

    @return: The attribute value.

    @raise ValueError: If C{host} is not an address literal or C{port} is
        out of range.
    """
    packed = _packHost(host)
    _checkPort(port)
    family = _FAMILY_IPV4 if len(packed) == _IPV4_LENGTH else _FAMILY_IPV6
    return _PORT_VALUE.pack(family, port) + packed


def decodeAddress(value: bytes) -> tuple[str, int]:
    """
    Decode a MAPPED-ADDRESS style value.

    @param value: The attribute value.

    @return: The address as canonical text, and the port.

    @raise BadAttribute: If the family is unknown or the length is wrong.
    """
    _checkAddressValue(value)
    return _hostText(value[_MIN_ADDRESS_VALUE_LENGTH:]), (value[2] << 8) | value[3]


def encodeXorAddress(host: str, port: int, transactionID: bytes) -> bytes:
    """
    Encode an XOR-MAPPED-ADDRESS style value.

    @param host: An IPv4 or IPv6 address literal.
    @param port: A port number.
    @param transactionID: The transaction ID of the message the value goes
        in, 12 bytes (or 16 for a classic message).

    @return: The attribute value.

    @raise ValueError: If C{host} is not an address literal, C{port} is out
        of range, or C{transactionID} has the wrong length.
    """
    if (
        type(port) is int
        and 0 <= port <= _MAX_PORT
        and len(transactionID) == _TRANSACTION_ID_LENGTH
        and type(host) is str
        and ":" not in host
    ):
        # The common case, IPv4 in an RFC 8489 message, masked with the
        # magic cookie alone.
        try:
            packed = inet_pton(AF_INET, host)
        except OSError:
            pass
        else:
            return _IPV4_VALUE.pack(
                _FAMILY_IPV4,
                port ^ _COOKIE_PORT,
                _UINT32.unpack(packed)[0] ^ MAGIC_COOKIE,
            )
    packed = _packHost(host)
    _checkPort(port)
    mask = _xorMask(transactionID)
    port ^= mask >> _XOR_PORT_SHIFT
    if len(packed) == _IPV4_LENGTH:
        return _IPV4_VALUE.pack(
            _FAMILY_IPV4,
            port,
            int.from_bytes(packed, "big") ^ (mask >> _XOR_IPV4_SHIFT),
        )
    masked = int.from_bytes(packed, "big") ^ mask
    return _PORT_VALUE.pack(_FAMILY_IPV6, port) + masked.to_bytes(_IPV6_LENGTH, "big")


def decodeXorAddress(value: bytes, transactionID: bytes) -> tuple[str, int]:
    """
    Decode an XOR-MAPPED-ADDRESS style value.

    @param value: The attribute value.
    @param transactionID: The transaction ID of the message the value came
        in, 12 bytes (or 16 for a classic message).

    @return: The address as canonical text, and the port.

    @raise BadAttribute: If the family is unknown or the length is wrong.
    @raise ValueError: If C{transactionID} has the wrong length.
    """
    if (
        len(value) == _IPV4_VALUE_LENGTH
        and value[1] == _FAMILY_IPV4
        and len(transactionID) == _TRANSACTION_ID_LENGTH
    ):
        _, port, masked = _IPV4_VALUE.unpack(value)
        return inet_ntoa(_UINT32.pack(masked ^ MAGIC_COOKIE)), port ^ _COOKIE_PORT
    mask = _xorMask(transactionID)
    family = _checkAddressValue(value)
    port = ((value[2] << 8) | value[3]) ^ (mask >> _XOR_PORT_SHIFT)
    if family == _FAMILY_IPV4:
        mask >>= _XOR_IPV4_SHIFT
        addressLength = _IPV4_LENGTH
    else:
        addressLength = _IPV6_LENGTH
    masked = int.from_bytes(value[_MIN_ADDRESS_VALUE_LENGTH:], "big") ^ mask
    return _hostText(masked.to_bytes(addressLength, "big")), port


def encodeErrorCode(code: int, reason: str) -> bytes:
    """
    Encode an ERROR-CODE value.

    @param code: The error code, 300 to 699, such as 401.
    @param reason: The reason phrase, fewer than 128 characters.

    @return: The attribute value.

    @raise ValueError: If C{code} or C{reason} is out of range.
    """
    if not _MIN_ERROR_CODE <= code <= _MAX_ERROR_CODE:
        raise ValueError(
            f"error code {code} is not {_MIN_ERROR_CODE} to {_MAX_ERROR_CODE}"
        )
    if len(reason) > _MAX_REASON_CHARACTERS:
        raise ValueError(
            f"reason phrase is {len(reason)} characters, more than "
            f"{_MAX_REASON_CHARACTERS}"
        )
    errorClass, number = divmod(code, 100)
    return _ERROR_CODE_VALUE.pack(0, errorClass, number) + reason.encode("utf-8")


def decodeErrorCode(value: bytes) -> tuple[int, str]:
    """
    Decode an ERROR-CODE value.

    @param value: The attribute value.

    @return: The error code, such as 401, and the reason phrase.

    @raise BadAttribute: If the value is too short or too long, the code is
        out of range, or the reason phrase is not UTF-8.
    """
    valueLength = len(value)
    if valueLength < _ERROR_CODE_HEADER_LENGTH:
        raise BadAttribute(
            f"ERROR-CODE is {valueLength} bytes, shorter than "
            f"{_ERROR_CODE_HEADER_LENGTH}"
        )
    if valueLength > _ERROR_CODE_HEADER_LENGTH + _MAX_REASON_BYTES:
        raise BadAttribute(
            f"ERROR-CODE reason phrase is {valueLength - _ERROR_CODE_HEADER_LENGTH}"
            f" bytes, more than {_MAX_REASON_BYTES}"
        )
    errorClass = value[2] & _ERROR_CLASS_MASK
    number = value[3]
    code = errorClass * 100 + number
    if number > _MAX_ERROR_NUMBER or not _MIN_ERROR_CODE <= code <= _MAX_ERROR_CODE:
        raise BadAttribute(
            f"ERROR-CODE class {errorClass} number {number} is not a code from "
            f"{_MIN_ERROR_CODE} to {_MAX_ERROR_CODE}"
        )
    try:
        reason = str(value[_ERROR_CODE_HEADER_LENGTH:], "utf-8")
    except UnicodeDecodeError as e:
        raise BadAttribute(f"ERROR-CODE reason phrase is not UTF-8: {e}") from e
    return code, reason


def encodeChangeRequest(changeIP: bool, changePort: bool) -> bytes:
    """
    Encode a CHANGE-REQUEST value (RFC 5780 7.2).

    @param changeIP: Whether the server should answer from its other
        address.
    @param changePort: Whether the server should answer from its other port.

    @return: The attribute value.
    """
    return _UINT32.pack(
        (_CHANGE_IP if changeIP else 0) | (_CHANGE_PORT if changePort else 0)
    )


def decodeChangeRequest(value: bytes) -> tuple[bool, bool]:
    """
    Decode a CHANGE-REQUEST value (RFC 5780 7.2); unknown flag bits are
    ignored.

    @param value: The attribute value.

    @return: Whether to change IP, and whether to change port.

    @raise BadAttribute: If the value is not 4 bytes.
    """
    if len(value) != _CHANGE_REQUEST_LENGTH:
        raise BadAttribute(
            f"CHANGE-REQUEST is {len(value)} bytes, not {_CHANGE_REQUEST_LENGTH}"
        )
    flags = value[3]
    return bool(flags & _CHANGE_IP), bool(flags & _CHANGE_PORT)
