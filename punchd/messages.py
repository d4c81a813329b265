"""
punchd's message vocabulary, carried in STUN messages.

Every datagram punchd sends is a STUN message (RFC 8489), but for the data
frames of L{punchd.frames}.  The methods of our
own are below 0x100, so the first byte of every message is 0 to 3 and a
multiplexer following RFC 7983 sees STUN; our attributes are in the
comprehension-optional range 0xC000-0xFFFF, so a STUN implementation that does
not know them skips them.  C{docs/protocol.rst} shows each message byte by
byte.

Stage manager and peer:

  - C{REGISTER} request: L{NAME}, a L{PEER} for each contact (up to
    L{MAX_CONTACTS}), any number of L{LOCAL_ADDRESS} and, while the peer
    has no direct path to some of its contacts and is not punching one,
    L{SEEKING}: empty when it seeks every contact, otherwise a bitmap of
    the L{PEER}s it seeks (bit 7 of byte 0 is the first); the last
    L{COOKIE}; once its NAT probe found it, its L{NAT_BEHAVIOUR}; once
    the peer holds its name's secret, C{MESSAGE-INTEGRITY}
    keyed with its L{registrationKey}.  Success: C{XOR-MAPPED-ADDRESS},
    L{LIFETIME}, when it seeks, L{PEER_STATE} (a byte for each contact
    sought, in order), a L{COOKIE}, and L{NAME_SECRET} for a new holder or
    L{NAME_NONCE} for a proven one.  Error: C{ERROR-CODE}, and a L{COOKIE}
    to echo (L{encodeChallenge}).
  - C{UNREGISTER} request: L{NAME}, C{MESSAGE-INTEGRITY} keyed with the
    L{registrationKey}.  Success: nothing more.
  - C{CANDIDATE} request from a peer: its L{NAME}, the L{PEER} it was
    introduced to, its L{RELAYED_ADDRESS} on the TURN server the
    introduction named, if it has one (or instead its L{MAPPED_ADDRESS},
    the port mapping its router granted), and, when it knows, its
    L{NAT_BEHAVIOUR} (at least an address or the behaviour), with
    C{MESSAGE-INTEGRITY} keyed with its own L{introductionKey}.  Success:
    nothing more.  The stage manager forwards it to the peer, in a
    C{CANDIDATE} request of L{NAME} (the sender), L{RELAYED_ADDRESS} and
    L{NAT_BEHAVIOUR}, keyed as an introduction is; the peer answers with a
    success response.
  - C{INTRODUCE} request from the stage manager: L{NAME} of the other peer,
    its public mapping in L{PEER_ADDRESS}, its L{PEER_LOCAL_ADDRESS}es and the
    L{PUNCH_KEY} both peers share (L{punchd.compat.introductions} has the
    introduction of an original C{test-client}), when the stage manager
    offers a TURN relay L{TURN_SERVER}, L{TURN_USERNAME}, L{TURN_PASSWORD}
    and maybe L{TURN_REALM}, the other peer's L{NAT_BEHAVIOUR} when its
    registration gave one, with C{MESSAGE-INTEGRITY}
    keyed with the recipient's L{introductionKey}.  The peer answers with a
    success response so the stage manager can stop retransmitting.

Peer and peer, every message with C{USERNAME} C{"receiver:sender"},
C{MESSAGE-INTEGRITY} keyed with the punch key, and C{FINGERPRINT}:

  - C{BINDING} request: a punch probe or a keepalive, with the sender's
    L{INDEX}.  Success: C{XOR-MAPPED-ADDRESS}, the address the probe came
    from, and the answerer's L{INDEX}.

What an application sends over the path goes in frames, which are not STUN
(L{punchd.frames}).

Every function here is pure: no I/O and no clock.
"""

import hashlib
import hmac
import struct
from dataclasses import dataclass
from socket import AF_INET, inet_pton

from punchd import stun

# Unassigned in the IANA STUN methods registry, at the top of its
# expert-review range (0x080-0x0FF): far from the IETF's own assignments,
# which count up from 0x00D, and from Google's GOOG-PING at 0x080.  Above
# 0x0FF the first byte of a message would be 4 or more, which an RFC 7983
# demultiplexer does not take for STUN.  docs/protocol.rst says more.
# (0x0F3 was DATA, before frames carried an application's datagrams.)
REGISTER = 0x0F0
UNREGISTER = 0x0F1
INTRODUCE = 0x0F2
#: A relayed candidate, from a peer to the stage manager and on to the
#: peer it was introduced to.  Far from the methods counting up from
#: 0x0F0, which other work takes.
CANDIDATE = 0x0F8
#: A proven peer's refresh of its registration with nothing changed: a
#: compact request of its own, see L{encodeRefresh}.
REFRESH = 0x0F9

NAME = 0xC001
PEER = 0xC002
LOCAL_ADDRESS = 0xC003
PEER_ADDRESS = 0xC004
PEER_LOCAL_ADDRESS = 0xC005
PUNCH_KEY = 0xC006
LIFETIME = 0xC007
SEEKING = 0xC008
# 0xC009: PAYLOAD, of the DATA indications that frames replaced.
PEER_STATE = 0xC00A
# 0xC00B: taken by punchd.compat.introductions.ORIGINAL.
#: 16 bytes the stage manager made from the sender's address and the time;
#: echoing it proves the sender receives at that address.
COOKIE = 0xC00C
#: 16 bytes the stage manager gives the first registrant of a name, once:
#: every later registration or unregistration of the name proves that it
#: holds them with a C{MESSAGE-INTEGRITY} keyed with L{registrationKey}.
NAME_SECRET = 0xC00D
#: 16 bytes in the answer to a registration that proved it holds the name's
#: secret: the secret is replaced by L{nextSecret} of it and this.
NAME_NONCE = 0xC00E
#: 4 bytes: 0, then the 24-bit receiver index the sender of a probe or an
#: answer chose for the path, which the frames sent to it carry
#: (L{punchd.frames}).
INDEX = 0xC00F
# 0xC020-0xC02F: relaying through TURN (RFC 8656).
#: In an introduction, the TURN server the peer may allocate a relayed
#: address on (an XOR address), and the short-lived credentials for it, in
#: coturn's REST-API form (see L{punchd.turn.restCredentials}).
TURN_SERVER = 0xC020
TURN_USERNAME = 0xC021
TURN_PASSWORD = 0xC022
#: The realm the TURN server is expected to name, when the stage manager
#: was told it.
TURN_REALM = 0xC023
#: A peer's relayed address on the TURN server, an XOR address.
RELAYED_ADDRESS = 0xC024
#: A peer's address on its router's external side that the router maps
#: to its socket (PCP or NAT-PMP, L{punchd.portmap}), an XOR address: in a
#: C{CANDIDATE} in place of L{RELAYED_ADDRESS}.
MAPPED_ADDRESS = 0xC026
#: How a peer's NAT maps and filters, as its NAT probe found: two bytes,
#: each 0 (endpoint-independent), 1 (address-dependent) or 2 (address and
#: port dependent).
NAT_BEHAVIOUR = 0xC025
#: In a C{REGISTER} request, empty: this registration only tells the
#: stage manager the name's public address of its other family (a
#: dual-stack peer's IPv6 one, say), the request's source; it must prove
#: the name with its secret's L{registrationKey}, and moves nothing else.
SECOND_FAMILY = 0xC027
#: In an C{INTRODUCE} request: the introduced peer's public address of the
#: other family than L{PEER_ADDRESS}'s, an XOR address, when it has one.
PEER_OTHER_ADDRESS = 0xC028
#: In a C{REGISTER} success: the handle a later L{REFRESH} names the entry
#: by (L{HANDLE_BYTES}), and the seconds it stays good (4 bytes).
REFRESH_HANDLE = 0xC010
#: In a L{REFRESH} request: the handle, a counter (4 bytes) and a MAC
#: (L{REFRESH_MAC_BYTES}), see L{encodeRefresh}.
REFRESH_PROOF = 0xC011

#: Values of L{PEER_STATE}, the stage manager's word on each wanted peer in
#: its answer to a registration that seeks an introduction: no
#: introduction yet, whether the wanted peer is absent or seeks another
#: (which is nobody's business but its own), or an introduction follows.
#: The value 1, once "seeks another", is no longer sent.
PEER_WAITING = 0
PEER_INTRODUCED = 2

MAX_NAME_BYTES = 64
#: The most contacts one registration names.
MAX_CONTACTS = 16
MAX_LOCAL_ADDRESSES = 8
PUNCH_KEY_BYTES = 16
SECRET_BYTES = 16
NONCE_BYTES = 16

BAD_REQUEST = 400
#: A registration without a valid cookie, answered with one to echo.
PROVE_ADDRESS = 401
#: A registration of a held name without the proof that it holds the
#: name's secret.
NAME_TAKEN = 403
#: A registration of a name its source may not hold: the source address
#: and port, or its IP, holds as many names as it may (TURN's "Allocation
#: Quota Reached", RFC 8656).
QUOTA_REACHED = 486
#: A registration of a new name while the phonebook is full (TURN's
#: "Insufficient Capacity", RFC 8656).
PHONEBOOK_FULL = 508
#: A L{REFRESH} the stage manager does not take (its handle unknown or
#: stale, or sent from elsewhere than the entry): register in full.
REGISTER_IN_FULL = 404

HANDLE_BYTES = 8
REFRESH_MAC_BYTES = 12

# The bytes a name may be made of when it is ASCII: printable, not a space.
_NAME_ASCII = bytes(range(0x21, 0x7F))


class InvalidMessage(ValueError):
    """
    A well-formed STUN message that breaks punchd's rules.

    @ivar code: The STUN error code to answer with.
    @ivar reason: What is wrong, in words for the sender's log.
    """

    def __init__(self, reason: str, code: int = BAD_REQUEST):
        super().__init__(reason)
        self.reason = reason
        self.code = code


def sharedKey(secret: bytes) -> bytes:
    """
    The key of the C{MESSAGE-INTEGRITY-SHA256} that a shared secret puts on
    every message between the stage manager and its peers.

    @param secret: The secret, as read from its file; white space around it
        does not count, so a trailing newline does not matter.
    """
    return hashlib.sha256(b"punchd shared secret\0" + secret.strip()).digest()


def introductionKey(secret: bytes) -> bytes:
    """
    The key of the C{MESSAGE-INTEGRITY} on every introduction the stage
    manager sends a peer, derived from the L{NAME_SECRET} of the peer's
    name: only the stage manager and the holder of the name know it, so a
    datagram spoofed from the stage manager's address cannot pass for an
    introduction.

    @param secret: The name's secret.
    @return: 16 bytes: HMAC-SHA256 of C{"punchd introduction"} keyed with
        C{secret}, cut short.
    """
    return hmac.digest(secret, b"punchd introduction", "sha256")[:16]


def registrationKey(secret: bytes) -> bytes:
    """
    The key of the C{MESSAGE-INTEGRITY} with which a peer proves, in a
    registration or an unregistration, that it holds its name's secret,
    without sending it.

    @param secret: The name's secret, as it stands (see L{nextSecret}).
    @return: 16 bytes: HMAC-SHA256 of C{"punchd registration"} keyed with
        C{secret}, cut short.
    """
    return hmac.digest(secret, b"punchd registration", "sha256")[:16]


def refreshKey(secret: bytes) -> bytes:
    """
    The key of the MAC with which a peer proves, in a L{REFRESH}, that it
    holds its name's secret.

    @param secret: The name's secret, as the registration answer that gave
        the handle left it.
    @return: 16 bytes: HMAC-SHA256 of C{"punchd refresh"} keyed with
        C{secret}, cut short.
    """
    return hmac.digest(secret, b"punchd refresh", "sha256")[:16]


def nextSecret(secret: bytes, nonce: bytes) -> bytes:
    """
    The name secret that replaces C{secret} once the stage manager answers
    a registration proven with it with the L{NAME_NONCE} C{nonce}: both
    sides work it out, so that the secret crosses the wire only once.

    @return: 16 bytes: HMAC-SHA256 of C{"punchd next secret\0"} and
        C{nonce}, keyed with C{secret}, cut short.
    """
    return hmac.digest(secret, b"punchd next secret\0" + nonce, "sha256")[:SECRET_BYTES]


def validateName(name: bytes) -> str:
    """
    Check a peer name as it came off the wire.

    A name is 1 to L{MAX_NAME_BYTES} bytes of UTF-8 without white space or
    control characters, so it prints on one line and fits the original text
    protocol, where a space ends the name.

    @return: The name as text.
    @raise InvalidMessage: If C{name} breaks a rule; the reason says which.
    """
    if 0 < len(name) <= MAX_NAME_BYTES and not name.translate(None, _NAME_ASCII):
        # Printable ASCII without spaces, as names nearly always are.
        return name.decode("ascii")
    if not name:
        raise InvalidMessage("empty name")
    if len(name) > MAX_NAME_BYTES:
        raise InvalidMessage(
            f"name is {len(name)} bytes, the limit is {MAX_NAME_BYTES}"
        )
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidMessage("name is not UTF-8") from None
    if not text.isprintable() or any(c.isspace() for c in text):
        raise InvalidMessage(f"name {text!r} has white space or control characters")
    return text


def utf8Prefix(text: str, limit: int) -> bytes:
    """
    The UTF-8 of C{text}, cut to at most C{limit} bytes at a character
    boundary, so that what is left still decodes.

    @raise UnicodeEncodeError: If C{text} holds a lone surrogate, as text
        from a command line that was not UTF-8 does.
    """
    encoded = text.encode("utf-8")
    if len(encoded) <= limit:
        return encoded
    # The bytes before the cut are whole characters but for a last one cut
    # short, which is all that "ignore" leaves out.
    return encoded[:limit].decode("utf-8", "ignore").encode("utf-8")


def readAddress(value: bytes, transactionID: bytes, what: str):
    """
    Decode an XOR address attribute C{what}.

    @raise InvalidMessage: If it is malformed.
    """
    try:
        return stun.decodeXorAddress(value, transactionID)
    except stun.StunError as e:
        raise InvalidMessage(f"bad {what}: {e}") from None


def readName(message: stun.Message, attribute: int, what: str, required: bool = True):
    """
    Read and check the name in C{attribute}, or L{None} if it is absent
    and not C{required}.

    @raise InvalidMessage: If it is absent but required, or not a name.
    """
    value = message.get(attribute)
    if value is None:
        if required:
            raise InvalidMessage(f"no {what}")
        return None
    return validateName(value)


@dataclass(frozen=True)
class Registration:
    """
    A peer's C{REGISTER} request.

    @ivar name: The peer's name.
    @ivar wants: The names of the peers it wants to reach, its contacts: a
        L{tuple}, without repeats.
    @ivar localAddresses: The C{(host, port)} pairs it has on its own network.
    @ivar seeking: The contacts it wants an introduction to now, in the
        order of C{wants}.
    @ivar cookie: The last L{COOKIE} the stage manager gave it, or L{None}.
    @ivar nat: How its NAT maps and filters (L{NAT_BEHAVIOUR}), or L{None}
        if it does not know.
    @ivar natDropped: Why a L{NAT_BEHAVIOUR} it sent was not taken (a
        length or a value this version does not know), or L{None}.
    @ivar secondFamily: Whether it carries L{SECOND_FAMILY}: it only
        gives the name's address of its other family.
    """

    name: str
    wants: tuple = ()
    localAddresses: tuple = ()
    seeking: tuple = ()
    cookie: "bytes | None" = None
    nat: "tuple | None" = None
    natDropped: "str | None" = None
    secondFamily: bool = False


def encodeRegistration(
    transactionID: bytes,
    registration: Registration,
    minimumSize: int = 0,
    key: "bytes | None" = None,
) -> bytes:
    """
    Encode a C{REGISTER} request.

    @param minimumSize: Add a C{PADDING} attribute to make the request at
        least this many bytes long.
    @param key: The L{registrationKey} of the name's secret, for the
        C{MESSAGE-INTEGRITY} that proves the peer holds it; L{None} before
        the peer has one.
    """
    attributes = [(NAME, registration.name.encode("utf-8"))]
    for wanted in registration.wants:
        attributes.append((PEER, wanted.encode("utf-8")))
    for host, port in registration.localAddresses:
        attributes.append(
            (LOCAL_ADDRESS, stun.encodeXorAddress(host, port, transactionID))
        )
    if registration.seeking:
        attributes.append((SEEKING, seekingBitmap(registration.wants, registration.seeking)))
    if registration.cookie is not None:
        attributes.append((COOKIE, registration.cookie))
    if registration.nat is not None:
        attributes.append((NAT_BEHAVIOUR, encodeBehaviour(registration.nat)))
    if registration.secondFamily:
        attributes.append((SECOND_FAMILY, b""))
    datagram = stun.encode(
        stun.Message(REGISTER, stun.REQUEST, transactionID, tuple(attributes)),
        integrityKey=key,
        fingerprint=True,
    )
    if len(datagram) < minimumSize:
        attributes.append((stun.PADDING, bytes(max(0, minimumSize - len(datagram) - 4))))
        datagram = stun.encode(
            stun.Message(REGISTER, stun.REQUEST, transactionID, tuple(attributes)),
            integrityKey=key,
            fingerprint=True,
        )
    return datagram


def seekingBitmap(wants: tuple, seeking: tuple) -> bytes:
    """
    The value of L{SEEKING}: empty when C{seeking} is all of C{wants},
    otherwise a bit for each of C{wants}, set for those in C{seeking}.
    """
    if len(seeking) == len(wants):
        return b""
    sought = set(seeking)
    bitmap = bytearray((len(wants) + 7) // 8)
    for index, wanted in enumerate(wants):
        if wanted in sought:
            bitmap[index // 8] |= 0x80 >> index % 8
    return bytes(bitmap)


def _sought(wants: tuple, bitmap: bytes) -> tuple:
    if not bitmap:
        return wants
    if len(bitmap) != (len(wants) + 7) // 8:
        raise InvalidMessage(f"SEEKING is {len(bitmap)} bytes for {len(wants)} PEERs")
    return tuple(
        wanted for index, wanted in enumerate(wants) if bitmap[index // 8] & (0x80 >> index % 8)
    )


def parseRegistration(message: stun.Message) -> Registration:
    """
    Read a C{REGISTER} request.

    @raise InvalidMessage: If it breaks a rule.
    """
    # One pass over the attributes: a registration is most of what the
    # stage manager reads.  The first NAME counts, as get() would.
    txid = message.transactionID
    name = cookie = seeking = nat = None
    secondFamily = False
    wants = []
    locals_ = []
    for attrType, value in message.attributes:
        if attrType == NAME:
            if name is None:
                name = value
        elif attrType == PEER:
            wants.append(value)
        elif attrType == LOCAL_ADDRESS:
            locals_.append(value)
        elif attrType == SEEKING:
            seeking = value
        elif attrType == COOKIE:
            cookie = value
        elif attrType == NAT_BEHAVIOUR:
            nat = value
        elif attrType == SECOND_FAMILY:
            secondFamily = True
    if len(locals_) > MAX_LOCAL_ADDRESSES:
        raise InvalidMessage(
            f"{len(locals_)} local addresses, the limit is {MAX_LOCAL_ADDRESSES}"
        )
    if len(locals_) == 1:
        localAddresses = (readAddress(locals_[0], txid, "LOCAL-ADDRESS"),)
    else:
        localAddresses = tuple(
            dict.fromkeys(readAddress(v, txid, "LOCAL-ADDRESS") for v in locals_)
        )
    if name is None:
        raise InvalidMessage("no NAME")
    if len(wants) > MAX_CONTACTS:
        raise InvalidMessage(f"{len(wants)} PEERs, the limit is {MAX_CONTACTS}")
    wants = tuple(map(validateName, wants))
    if len(wants) > 1 and len(set(wants)) != len(wants):
        raise InvalidMessage("a PEER named twice")
    return Registration(
        validateName(name),
        wants,
        localAddresses,
        () if seeking is None else _sought(wants, seeking),
        cookie,
        *readBehaviour(nat),
        secondFamily,
    )


def encodeRegistered(
    transactionID: bytes,
    observed,
    lifetime: int,
    peerStates: tuple = (),
    cookie: "bytes | None" = None,
    secret: "bytes | None" = None,
    nonce: "bytes | None" = None,
    handle: "tuple | None" = None,
) -> bytes:
    """
    Encode the success response to a C{REGISTER} request.

    @param observed: The C{(host, port)} the request came from.
    @param lifetime: Seconds the registration lives without a refresh.
    @param peerStates: For each contact the request sought, in order,
        L{PEER_WAITING} or L{PEER_INTRODUCED}; empty when it sought none.
    @param cookie: A L{COOKIE} for the registrant's next registration.
    @param secret: The L{NAME_SECRET} given to a name's new holder, or
        L{None}.
    @param nonce: The L{NAME_NONCE} for the next secret, in the answer to
        a registration that proved it holds the secret; or L{None}.
    @param handle: The L{REFRESH_HANDLE} and the seconds it stays good, as
        a 2-tuple; or L{None}.
    """
    # Made for every registration, so from encoded attributes.
    attributes = stun.attribute(
        stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*observed, transactionID)
    ) + stun.attribute(LIFETIME, lifetime.to_bytes(4, "big"))
    if peerStates:
        attributes += stun.attribute(PEER_STATE, bytes(peerStates))
    if cookie is not None:
        attributes += stun.attribute(COOKIE, cookie)
    if secret is not None:
        attributes += stun.attribute(NAME_SECRET, secret)
    if nonce is not None:
        attributes += stun.attribute(NAME_NONCE, nonce)
    if handle is not None:
        attributes += stun.attribute(REFRESH_HANDLE, handle[0] + handle[1].to_bytes(4, "big"))
    return stun.encodeAttributes(
        REGISTER, stun.SUCCESS, transactionID, attributes, fingerprint=True
    )


@dataclass(frozen=True)
class Registered:
    """
    The stage manager's answer to a registration.

    @ivar observed: The C{(host, port)} the stage manager saw it come from.
    @ivar lifetime: Seconds the registration lives without a refresh.
    @ivar peerStates: The L{PEER_STATE} values, one for each contact
        sought: a L{tuple}.
    @ivar cookie: The L{COOKIE} to echo next time, or L{None}.
    @ivar secret: The L{NAME_SECRET} given to the name's new holder, or
        L{None}.
    @ivar nonce: The L{NAME_NONCE} the next secret is made with, or L{None}.
    @ivar handle: The L{REFRESH_HANDLE}'s handle, or L{None}.
    @ivar handleLifetime: Seconds the handle stays good, or 0.
    """

    observed: tuple
    lifetime: int
    peerStates: tuple = ()
    cookie: "bytes | None" = None
    secret: "bytes | None" = None
    nonce: "bytes | None" = None
    handle: "bytes | None" = None
    handleLifetime: int = 0


def parseRegistered(message: stun.Message) -> Registered:
    """
    Read a C{REGISTER} success response.

    @raise InvalidMessage: If an attribute is missing or bad.
    """
    mapped = message.get(stun.XOR_MAPPED_ADDRESS)
    lifetime = message.get(LIFETIME)
    if mapped is None or lifetime is None or len(lifetime) != 4:
        raise InvalidMessage("registration answer lacks XOR-MAPPED-ADDRESS or LIFETIME")
    peerStates = message.get(PEER_STATE)
    if peerStates is not None and len(peerStates) > MAX_CONTACTS:
        raise InvalidMessage(f"PEER-STATE for {len(peerStates)} peers")
    secret, nonce = message.get(NAME_SECRET), message.get(NAME_NONCE)
    for value, what in ((secret, "NAME-SECRET"), (nonce, "NAME-NONCE")):
        if value is not None and len(value) != SECRET_BYTES:
            raise InvalidMessage(f"{what} is not {SECRET_BYTES} bytes")
    handle, handleLifetime = message.get(REFRESH_HANDLE), 0
    if handle is not None:
        if len(handle) != HANDLE_BYTES + 4:
            raise InvalidMessage(f"REFRESH-HANDLE is not {HANDLE_BYTES + 4} bytes")
        handle, handleLifetime = handle[:HANDLE_BYTES], int.from_bytes(handle[HANDLE_BYTES:], "big")
    return Registered(
        readAddress(mapped, message.transactionID, "XOR-MAPPED-ADDRESS"),
        int.from_bytes(lifetime, "big"),
        () if peerStates is None else tuple(peerStates),
        message.get(COOKIE),
        secret,
        nonce,
        handle,
        handleLifetime,
    )


def encodeError(method: int, transactionID: bytes, code: int, reason: str) -> bytes:
    """
    Encode an error response.
    """
    return stun.encode(
        stun.Message(
            method,
            stun.ERROR,
            transactionID,
            ((stun.ERROR_CODE, stun.encodeErrorCode(code, reason)),),
        ),
        fingerprint=True,
    )


def encodeChallenge(transactionID: bytes, cookie: bytes) -> bytes:
    """
    Encode the answer to a registration without a valid cookie: an error
    response, L{PROVE_ADDRESS}, with a L{COOKIE} to echo: the only answer
    to a source that has not proven its address, and no larger than
    L{UNPROVEN_REGISTRATION_BYTES}.
    """
    return stun.encode(
        stun.Message(
            REGISTER,
            stun.ERROR,
            transactionID,
            (
                (stun.ERROR_CODE, stun.encodeErrorCode(PROVE_ADDRESS, "Echo the cookie")),
                (COOKIE, cookie),
            ),
        ),
        fingerprint=True,
    )


#: The size a peer pads a registration to when it is smaller: that of the
#: cookie challenge (L{encodeChallenge}), all a registration without a
#: valid cookie is answered with, so that the answer is never larger than
#: the request.
UNPROVEN_REGISTRATION_BYTES = len(encodeChallenge(bytes(12), bytes(16)))


def encodeUnregister(transactionID: bytes, name: str, secret: "bytes | None" = None) -> bytes:
    """
    Encode an C{UNREGISTER} request.

    @param secret: The name's secret as it stands: the request carries a
        C{MESSAGE-INTEGRITY} keyed with its L{registrationKey}, not the
        secret.
    """
    return stun.encode(
        stun.Message(UNREGISTER, stun.REQUEST, transactionID, ((NAME, name.encode("utf-8")),)),
        integrityKey=None if secret is None else registrationKey(secret),
        fingerprint=True,
    )


def parseUnregister(message: stun.Message) -> str:
    """
    Read an C{UNREGISTER} request.

    @return: The name to forget.
    @raise InvalidMessage: If the name is missing or bad.
    """
    return readName(message, NAME, "NAME", True)


def encodeSuccess(method: int, transactionID: bytes) -> bytes:
    """
    Encode a success response with no attributes of its own.
    """
    return stun.encode(
        stun.Message(method, stun.SUCCESS, transactionID), fingerprint=True
    )


@dataclass(frozen=True)
class Introduction:
    """
    The stage manager's introduction of another peer.

    @ivar name: The other peer's name.
    @ivar address: Its public mapping, C{(host, port)}.
    @ivar localAddresses: Its addresses on its own network.
    @ivar key: The punch key both peers share.
    @ivar turn: The L{TurnCredentials} for the stage manager's TURN relay,
        or L{None} when it offers none.
    @ivar nat: How the other peer's NAT maps and filters, as it last
        registered (L{NAT_BEHAVIOUR}), or L{None} if not known.
    @ivar natDropped: Why a L{NAT_BEHAVIOUR} was not taken, or L{None}.
    @ivar otherAddress: Its public address of the other family
        (L{PEER_OTHER_ADDRESS}), or L{None}.
    """

    name: str
    address: tuple
    localAddresses: tuple
    key: bytes
    turn: "TurnCredentials | None" = None
    nat: "tuple | None" = None
    natDropped: "str | None" = None
    otherAddress: "tuple | None" = None


@dataclass(frozen=True)
class TurnCredentials:
    """
    A TURN server and the short-lived credentials for it that the stage
    manager hands an introduced peer.

    @ivar server: The TURN server's C{(host, port)}.
    @ivar username: C{EXPIRY:NAME}.
    @ivar password: The password, base64 text.
    @ivar realm: The realm it is expected to name, or L{None}.
    """

    server: tuple
    username: str
    password: str
    realm: "str | None" = None


def encodeIntroduction(transactionID: bytes, introduction: Introduction, key: bytes) -> bytes:
    """
    Encode an C{INTRODUCE} request.

    @param key: The recipient's L{introductionKey}, the key of its
        C{MESSAGE-INTEGRITY}.
    """
    attributes = [
        (NAME, introduction.name.encode("utf-8")),
        (PEER_ADDRESS, stun.encodeXorAddress(*introduction.address, transactionID)),
    ]
    if introduction.otherAddress is not None:
        attributes.append(
            (PEER_OTHER_ADDRESS, stun.encodeXorAddress(*introduction.otherAddress, transactionID))
        )
    for host, port in introduction.localAddresses:
        attributes.append(
            (PEER_LOCAL_ADDRESS, stun.encodeXorAddress(host, port, transactionID))
        )
    attributes.append((PUNCH_KEY, introduction.key))
    if introduction.turn is not None:
        attributes += _turnAttributes(introduction.turn, transactionID)
    if introduction.nat is not None:
        attributes.append((NAT_BEHAVIOUR, encodeBehaviour(introduction.nat)))
    return stun.encode(
        stun.Message(INTRODUCE, stun.REQUEST, transactionID, tuple(attributes)),
        integrityKey=key,
        fingerprint=True,
    )


def parseIntroduction(message: stun.Message) -> Introduction:
    """
    Read an C{INTRODUCE} request.

    @raise InvalidMessage: If it breaks a rule.
    """
    txid = message.transactionID
    address = message.get(PEER_ADDRESS)
    key = message.get(PUNCH_KEY)
    if address is None:
        raise InvalidMessage("introduction lacks PEER-ADDRESS")
    if key is None or len(key) != PUNCH_KEY_BYTES:
        raise InvalidMessage("introduction lacks a PUNCH-KEY of 16 bytes")
    locals_ = message.getAll(PEER_LOCAL_ADDRESS)[:MAX_LOCAL_ADDRESSES]
    nat, natDropped = readBehaviour(message.get(NAT_BEHAVIOUR))
    other = message.get(PEER_OTHER_ADDRESS)
    return Introduction(
        name=readName(message, NAME, "NAME", True),
        address=readAddress(address, txid, "PEER-ADDRESS"),
        otherAddress=None if other is None else readAddress(other, txid, "PEER-OTHER-ADDRESS"),
        localAddresses=tuple(readAddress(v, txid, "PEER-LOCAL-ADDRESS") for v in locals_),
        key=key,
        turn=_readTurn(message),
        nat=nat,
        natDropped=natDropped,
    )


#: The most bytes of a TURN username, password or realm (RFC 8489 14.3
#: and 14.9: fewer than 513 and 763).
MAX_TURN_TEXT_BYTES = 512


def _turnAttributes(turn: TurnCredentials, transactionID: bytes) -> list:
    attributes = [
        (TURN_SERVER, stun.encodeXorAddress(*turn.server, transactionID)),
        (TURN_USERNAME, turn.username.encode("utf-8")),
        (TURN_PASSWORD, turn.password.encode("utf-8")),
    ]
    if turn.realm is not None:
        attributes.append((TURN_REALM, turn.realm.encode("utf-8")))
    return attributes


def _readTurn(message: stun.Message) -> "TurnCredentials | None":
    server = message.get(TURN_SERVER)
    if server is None:
        return None
    texts = []
    for attrType, what in (
        (TURN_USERNAME, "TURN-USERNAME"),
        (TURN_PASSWORD, "TURN-PASSWORD"),
        (TURN_REALM, "TURN-REALM"),
    ):
        value = message.get(attrType)
        if value is None:
            if attrType == TURN_REALM:
                texts.append(None)
                continue
            raise InvalidMessage(f"TURN-SERVER without {what}")
        if not value or len(value) > MAX_TURN_TEXT_BYTES:
            raise InvalidMessage(f"{what} of {len(value)} bytes")
        try:
            texts.append(value.decode("utf-8"))
        except UnicodeDecodeError:
            raise InvalidMessage(f"{what} is not UTF-8") from None
    return TurnCredentials(
        readAddress(server, message.transactionID, "TURN-SERVER"), *texts
    )


@dataclass(frozen=True)
class RelayCandidate:
    """
    A peer's relayed address or the port mapping its router granted, or
    its NAT's behaviour, or both, on their way through the stage manager
    to the peer it was introduced to.

    @ivar name: The sender's name.
    @ivar address: Its relayed C{(host, port)}, or with C{mapped} its
        mapped one; L{None} when it sends only its NAT's behaviour.
    @ivar peer: The name of the peer it is for, on the way to the stage
        manager; L{None} on the way from it.
    @ivar nat: How the sender's NAT maps and filters: a pair of
        L{punchd.natprobe} behaviours, or L{None} if it does not know.
    @ivar mapped: Whether the address is a port mapping on the sender's
        router (L{MAPPED_ADDRESS}) rather than a relayed one.
    @ivar natDropped: Why a L{NAT_BEHAVIOUR} was not taken, or L{None}.
    @ivar other: Whether the address is the sender's public address of its
        other family (L{PEER_OTHER_ADDRESS}), which only the stage manager
        sends, having seen it: a dual-stack peer's, registered after its
        introduction.
    """

    name: str
    address: "tuple | None"
    peer: "str | None" = None
    nat: "tuple | None" = None
    mapped: bool = False
    natDropped: "str | None" = None
    other: bool = False

    @property
    def kind(self) -> str:
        """
        C{"mapped"}, C{"other family"} or C{"relayed"}: which its address
        is.
        """
        if self.other:
            return "other family"
        return "mapped" if self.mapped else "relayed"

    @property
    def attribute(self) -> int:
        """
        The attribute its address travels in.
        """
        if self.other:
            return PEER_OTHER_ADDRESS
        return MAPPED_ADDRESS if self.mapped else RELAYED_ADDRESS


#: The behaviours of L{NAT_BEHAVIOUR}, by their number on the wire.
_BEHAVIOURS = ("endpoint-independent", "address-dependent", "address-and-port-dependent")


def encodeBehaviour(nat) -> bytes:
    """
    The value of L{NAT_BEHAVIOUR}: a byte for the mapping, then one for the
    filtering, each the behaviour's number in L{_BEHAVIOURS}.

    @param nat: A C{(mapping, filtering)} pair of L{punchd.natprobe}
        behaviours.
    """
    return bytes(_BEHAVIOURS.index(b) for b in nat)


def readBehaviour(value: "bytes | None") -> tuple:
    """
    Read a L{NAT_BEHAVIOUR} value, if there is one.

    A value this version cannot read is not a reason to refuse the message
    that carries it (a later version may know more behaviours): it is left
    out, and the reason given for the recipient to count.

    @return: C{(nat, natDropped)}: the pair, or L{None}; and why a value
        was left out, or L{None}.
    """
    if value is None:
        return None, None
    if len(value) != 2:
        return None, f"NAT-BEHAVIOUR of {len(value)} bytes"
    nat = _PAIRS.get(value)
    if nat is None:
        return None, f"NAT-BEHAVIOUR {value.hex()}, a behaviour not known"
    return nat, None


# One tuple for each of the nine pairs, shared by every message and entry
# that holds it.
_PAIRS = {
    bytes((m, f)): (mapping, filtering)
    for m, mapping in enumerate(_BEHAVIOURS)
    for f, filtering in enumerate(_BEHAVIOURS)
}


def encodeCandidate(transactionID: bytes, candidate: RelayCandidate, key: bytes) -> bytes:
    """
    Encode a C{CANDIDATE} request.

    @param key: The L{introductionKey} of the sender's name secret (to the
        stage manager) or of the recipient's (from it).
    """
    attributes = [(NAME, candidate.name.encode("utf-8"))]
    if candidate.address is not None:
        attributes.append(
            (candidate.attribute, stun.encodeXorAddress(*candidate.address, transactionID))
        )
    if candidate.peer is not None:
        attributes.append((PEER, candidate.peer.encode("utf-8")))
    if candidate.nat is not None:
        attributes.append((NAT_BEHAVIOUR, encodeBehaviour(candidate.nat)))
    return stun.encode(
        stun.Message(CANDIDATE, stun.REQUEST, transactionID, tuple(attributes)),
        integrityKey=key,
        fingerprint=True,
    )


def parseCandidate(message: stun.Message) -> RelayCandidate:
    """
    Read a C{CANDIDATE} request.

    @raise InvalidMessage: If it breaks a rule: one with no address
        (L{RELAYED_ADDRESS}, L{MAPPED_ADDRESS} or L{PEER_OTHER_ADDRESS}) and
        no L{NAT_BEHAVIOUR} says nothing, and one with two addresses is
        ambiguous.
    """
    found = [
        (attribute, what, value)
        for attribute, what in _CANDIDATE_ADDRESSES
        for value in (message.get(attribute),)
        if value is not None
    ]
    if len(found) > 1:
        raise InvalidMessage(f"CANDIDATE has both {found[0][1]} and {found[1][1]}")
    nat = message.get(NAT_BEHAVIOUR)
    if not found and nat is None:
        raise InvalidMessage(
            "CANDIDATE lacks RELAYED-ADDRESS, MAPPED-ADDRESS, PEER-OTHER-ADDRESS and NAT-BEHAVIOUR"
        )
    address = attribute = None
    if found:
        attribute, what, value = found[0]
        address = readAddress(value, message.transactionID, what)
    nat, natDropped = readBehaviour(nat)
    return RelayCandidate(
        readName(message, NAME, "NAME", True),
        address,
        readName(message, PEER, "PEER", False),
        nat,
        attribute == MAPPED_ADDRESS,
        natDropped,
        attribute == PEER_OTHER_ADDRESS,
    )


_CANDIDATE_ADDRESSES = (
    (RELAYED_ADDRESS, "RELAYED-ADDRESS"),
    (MAPPED_ADDRESS, "MAPPED-ADDRESS"),
    (PEER_OTHER_ADDRESS, "PEER-OTHER-ADDRESS"),
)


def username(receiver: str, sender: str) -> bytes:
    """
    The C{USERNAME} of a message between peers: C{"receiver:sender"}.
    """
    return f"{receiver}:{sender}".encode("utf-8")


def encodeProbe(
    transactionID: bytes, receiver: str, sender: str, key: bytes, index: int
) -> bytes:
    """
    Encode a punch probe or keepalive: an authenticated C{BINDING} request.

    @param index: The sender's receiver index for the path, its L{INDEX}.
    """
    return stun.encode(
        stun.Message(
            stun.BINDING,
            stun.REQUEST,
            transactionID,
            (
                (stun.USERNAME, username(receiver, sender)),
                (INDEX, index.to_bytes(4, "big")),
            ),
        ),
        integrityKey=key,
        fingerprint=True,
    )


def encodeProbeAnswer(transactionID: bytes, observed, key: bytes, index: int) -> bytes:
    """
    Encode the answer to a punch probe: an authenticated C{BINDING} success
    response naming the address the probe came from.

    @param index: The answerer's receiver index for the path, its L{INDEX}.
    """
    return stun.encode(
        stun.Message(
            stun.BINDING,
            stun.SUCCESS,
            transactionID,
            (
                (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*observed, transactionID)),
                (INDEX, index.to_bytes(4, "big")),
            ),
        ),
        integrityKey=key,
        fingerprint=True,
    )


def parseIndex(message: stun.Message) -> int:
    """
    Read the L{INDEX} of a probe or an answer.

    @raise InvalidMessage: If there is none, or it is not 24 bits in 4
        bytes.
    """
    value = message.get(INDEX)
    if value is None or len(value) != 4 or value[0]:
        raise InvalidMessage("probe without a 24-bit INDEX in 4 bytes")
    return int.from_bytes(value, "big")


def bindingAnswer(request: stun.Message, observed) -> bytes:
    """
    Encode the answer to a plain STUN Binding request from any STUN client.

    It carries only the client's address: C{XOR-MAPPED-ADDRESS}, or
    C{MAPPED-ADDRESS} for a classic RFC 3489 client, and a C{FINGERPRINT}
    only when the request had one.  So the answer is never more than 12
    bytes (24 for IPv6) larger than the request.

    @param observed: The C{(host, port)} the request came from.
    """
    txid = request.transactionID
    if request.classic:
        attribute = stun.attribute(stun.MAPPED_ADDRESS, stun.encodeAddress(*observed))
    else:
        attribute = stun.attribute(
            stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*observed, txid)
        )
    return stun.encodeAttributes(
        stun.BINDING,
        stun.SUCCESS,
        txid,
        attribute,
        fingerprint=bool(request.attributes)
        and request.get(stun.FINGERPRINT) is not None,
    )


#: The first 8 bytes of a bare RFC 8489 Binding request, a header with no
#: attributes, which is what most STUN clients send: the type, a length of
#: 0 and the magic cookie.  The 12 bytes of transaction ID follow.
BARE_BINDING_REQUEST = b"\x00\x01\x00\x00\x21\x12\xa4\x42"

# The answer's header up to the ID (Binding success, 12 bytes of
# attributes, the cookie), and the header of its XOR-MAPPED-ADDRESS.
_BINDING_SUCCESS_IPV4 = b"\x01\x01\x00\x0c\x21\x12\xa4\x42"
_XOR_MAPPED_IPV4 = b"\x00\x20\x00\x08\x00\x01"
_PORT_AND_IPV4 = struct.Struct("!HI")
_COOKIE_PORT = stun.MAGIC_COOKIE >> 16


def bareBindingAnswer(transactionID: bytes, observed) -> bytes:
    """
    Encode the answer to a bare Binding request (see
    L{BARE_BINDING_REQUEST}): what L{bindingAnswer} makes of it, without
    decoding the request first.

    @param transactionID: The request's 12-byte transaction ID.
    @param observed: The C{(host, port)} the request came from.
    """
    host, port = observed[0], observed[1]
    if ":" not in host and type(port) is int and 0 <= port <= 0xFFFF:
        # IPv4, as stun.encodeXorAddress() would do it, one call shorter:
        # this answers every bare Binding request.
        try:
            packed = inet_pton(AF_INET, host)
        except OSError:
            pass
        else:
            return (
                _BINDING_SUCCESS_IPV4
                + transactionID
                + _XOR_MAPPED_IPV4
                + _PORT_AND_IPV4.pack(
                    port ^ _COOKIE_PORT, int.from_bytes(packed, "big") ^ stun.MAGIC_COOKIE
                )
            )
    return bindingAnswer(stun.Message(stun.BINDING, stun.REQUEST, transactionID), observed)


# A REFRESH request is always REFRESH_BYTES long: the header, then one
# REFRESH-PROOF of 24 bytes.  Its first 8 bytes, and the attribute's header
# at 20, are the same in every one, so that the stage manager knows one
# before decoding anything.
_REFRESH_TYPE = stun.encodeAttributes(REFRESH, stun.REQUEST, bytes(12), b"")[:2]
_REFRESH_PROOF_BYTES = HANDLE_BYTES + 4 + REFRESH_MAC_BYTES
REFRESH_HEAD = _REFRESH_TYPE + (4 + _REFRESH_PROOF_BYTES).to_bytes(2, "big") + stun.MAGIC_COOKIE.to_bytes(4, "big")
REFRESH_PROOF_HEAD = REFRESH_PROOF.to_bytes(2, "big") + _REFRESH_PROOF_BYTES.to_bytes(2, "big")
REFRESH_BYTES = 20 + 4 + _REFRESH_PROOF_BYTES


def refreshMAC(key: bytes, transactionID: bytes, handle: bytes, counter: bytes) -> bytes:
    """
    The MAC of a L{REFRESH}: keyed BLAKE2s (RFC 7693) under L{refreshKey}
    of the transaction ID, the handle and the counter, of
    L{REFRESH_MAC_BYTES}.  BLAKE2s is a MAC with a key as it stands, and
    costs less than half what HMAC-SHA256 does on the stage manager's most
    common datagram.
    """
    return hashlib.blake2s(
        transactionID + handle + counter, key=key, digest_size=REFRESH_MAC_BYTES
    ).digest()


def encodeRefresh(transactionID: bytes, handle: bytes, counter: int, key: bytes) -> bytes:
    """
    Encode a L{REFRESH} request: L{REFRESH_BYTES} bytes.

    @param handle: The handle the last registration's answer gave.
    @param counter: Higher than in any refresh sent before with C{handle}.
    @param key: The L{refreshKey} of the name's secret.
    """
    if len(handle) != HANDLE_BYTES:
        raise ValueError(f"a handle is {HANDLE_BYTES} bytes")
    packed = counter.to_bytes(4, "big")
    return (
        REFRESH_HEAD
        + transactionID
        + REFRESH_PROOF_HEAD
        + handle
        + packed
        + refreshMAC(key, transactionID, handle, packed)
    )


def parseRefresh(message: stun.Message) -> tuple:
    """
    Read a L{REFRESH} request that came through the full decoder (as with a
    shared secret, whose C{MESSAGE-INTEGRITY-SHA256} makes it longer).

    @return: The handle, the counter's 4 bytes and the MAC.
    @raise InvalidMessage: If C{REFRESH-PROOF} is missing or not 24 bytes.
    """
    proof = message.get(REFRESH_PROOF)
    if proof is None or len(proof) != _REFRESH_PROOF_BYTES:
        raise InvalidMessage("REFRESH lacks a REFRESH-PROOF of 24 bytes")
    return proof[:HANDLE_BYTES], proof[HANDLE_BYTES : HANDLE_BYTES + 4], proof[HANDLE_BYTES + 4 :]


_REFRESHED_HEAD = stun.encodeAttributes(REFRESH, stun.SUCCESS, bytes(12), b"")[:8]


def encodeRefreshed(transactionID: bytes) -> bytes:
    """
    Encode the success response to a L{REFRESH}: the header alone, 20
    bytes.
    """
    return _REFRESHED_HEAD + transactionID


def encodeRefreshRefused(transactionID: bytes) -> bytes:
    """
    Encode the answer to a L{REFRESH} the stage manager does not take: an
    error response with L{REGISTER_IN_FULL} and no reason, 28 bytes.
    """
    return stun.encodeAttributes(
        REFRESH,
        stun.ERROR,
        transactionID,
        stun.attribute(stun.ERROR_CODE, stun.encodeErrorCode(REGISTER_IN_FULL, "")),
    )
