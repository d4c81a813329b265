"""
Data frames: the compact framing of the datagrams an application sends over
a path, authenticated one by one, with replay protection.

Every other datagram between peers is a STUN message, whose first byte is 0
to 3.  A frame's first byte is L{FRAME_TYPE}, 0x08: RFC 7983, which WebRTC
follows to tell the protocols on one port apart, gives 0-3 to STUN, 16-19
to ZRTP, 20-63 to DTLS, 64-79 to TURN ChannelData and 128-191 to RTP and
RTCP, and RFC 9443 gives 80-127 and 192-255 to QUIC; 4-15 is the one range
left to nobody.  punchd takes the middle of it and leaves the rest for
other kinds of frame.

A frame, 20 bytes and the payload::

    0      1      2      3      4 ... 9          10 ... 19     20 ...
    | 0x08 | receiver index     | sequence       | tag         | payload

  - receiver index: 24 bits, big-endian, which the receiver chose for the
    path and told the sender in its probes (L{punchd.messages.INDEX}), as
    WireGuard's receiver index: one look-up finds the path, and its key,
    among all the paths on a socket, without trying every key;
  - sequence: 48 bits, big-endian, counting the sender's frames on the
    path from 0;
  - tag: 80 bits of keyed BLAKE2b (RFC 7693, with a 10-byte digest) of the
    first 10 bytes and the payload, keyed with the sender's L{frameKey}
    for the path.  Eighty bits, as SRTP's default HMAC-SHA1-80 and RFC
    2104's floor for a truncated MAC.

The receiver drops a frame whose tag does not verify, and one whose
sequence number it has seen or that is L{WINDOW} or more behind the highest
it has seen (L{ReplayWindow}, as IPsec, DTLS and WireGuard keep one).

Nothing is encrypted: a frame carries its payload as it is.

Overhead: 20 bytes.  WireGuard at its default MTU of 1420 sends datagrams
of up to 1452 bytes (a 16-byte header, the packet, a 16-byte tag); in a
frame that is 1472 bytes of UDP payload, and with 8 bytes of UDP header and
20 of IPv4 exactly 1500: one Ethernet packet, unfragmented.  Over IPv6 (40
bytes of header) the same frame is 1520 bytes; give WireGuard an MTU of
1400 there.

Every function here is pure: no I/O and no clock.
"""

import hashlib
import hmac
import secrets
import struct

#: The first byte of every frame.
FRAME_TYPE = 0x08

#: Bytes before the payload: type, receiver index, sequence, tag.
OVERHEAD = 20

#: The bytes of the tag.
TAG_BYTES = 10

#: The most bytes of payload a frame carries: what fills a 1500-byte IPv4
#: packet (1500 - 20 IPv4 - 8 UDP - 20 frame), and what WireGuard sends
#: at its default MTU of 1420.
MAX_PAYLOAD_BYTES = 1452

#: Receiver indices are 24 bits.
INDEX_BITS = 24

#: The highest sequence number, after which a path sends no more frames
#: (nine years at a million frames a second).
MAX_SEQUENCE = (1 << 48) - 1

#: How far behind the highest sequence number seen a frame may be, and
#: still be taken if it was not seen: reordering that deep is accepted.
WINDOW = 2048

_FIRST = struct.Struct("!IHI")
_SEQUENCE = struct.Struct("!HI")
_TYPE_BYTE = bytes((FRAME_TYPE,))


class FrameError(ValueError):
    """
    A datagram that is not a frame to take: the reason is one of
    L{MALFORMED}, L{UNAUTHENTICATED} and L{REPLAYED}, the keys a peer
    counts dropped frames under.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


MALFORMED = "malformed frame"
UNKNOWN_INDEX = "frame for no path"
UNAUTHENTICATED = "unauthenticated frame"
REPLAYED = "replayed or too old frame"


def isFrame(datagram: bytes) -> bool:
    """
    Whether a datagram is a frame rather than STUN, by its first byte.
    """
    return datagram[:1] == _TYPE_BYTE


def receiverIndex(datagram: bytes) -> int:
    """
    The receiver index of a frame, to find its path by.

    @raise FrameError: If it is too short to be a frame.
    """
    if len(datagram) < OVERHEAD:
        raise FrameError(MALFORMED, f"{len(datagram)} bytes, fewer than a frame's {OVERHEAD}")
    return int.from_bytes(datagram[1:4], "big")


def freeIndex(taken, randbits=secrets.randbits) -> int:
    """
    A receiver index for a new path, drawn at random: unpredictable, so
    that a frame left over from another session finds no path as often as
    can be.

    @param taken: The indices of the paths there are (a container).
    @param randbits: A function of a number of bits that returns that many
        random bits, such as L{random.Random.getrandbits}.
    @return: An index not in C{taken}.
    """
    while True:
        index = randbits(INDEX_BITS)
        if index not in taken:
            return index


def frameKey(punchKey: bytes, sender: str, receiver: str) -> bytes:
    """
    The key of the tags of the frames C{sender} sends C{receiver} on the
    path keyed with C{punchKey}: one key a direction, so that a frame sent
    back to its sender is not taken.

    @param punchKey: The path's key: the introduction's, or with a peer
        secret the one L{punchd.identity.punchKey} derives.
    @param sender: The sender's name as the probes carry it.
    @param receiver: The receiver's, likewise.
    @return: 32 bytes: C{HMAC-SHA256(punchKey, "punchd frame\\0" + sender +
        "\\0" + receiver)}.
    """
    label = b"punchd frame\0" + sender.encode("utf-8") + b"\0" + receiver.encode("utf-8")
    return hmac.digest(punchKey, label, "sha256")


def _tag(key: bytes, first: bytes, payload: bytes) -> bytes:
    mac = hashlib.blake2b(first, key=key, digest_size=TAG_BYTES)
    mac.update(payload)
    return mac.digest()


def encode(key: bytes, index: int, sequence: int, payload: bytes) -> bytes:
    """
    Make a frame.

    @param key: The sender's L{frameKey}.
    @param index: The receiver's index for the path.
    @param sequence: The frame's sequence number.
    @raise ValueError: If C{payload} is larger than L{MAX_PAYLOAD_BYTES}.
    @raise OverflowError: If C{sequence} is past L{MAX_SEQUENCE}.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(
            f"a datagram on a path carries at most {MAX_PAYLOAD_BYTES} bytes, not {len(payload)}"
        )
    if sequence > MAX_SEQUENCE:
        raise OverflowError("the path has sent all the frames its sequence numbers count")
    first = _FIRST.pack((FRAME_TYPE << 24) | index, sequence >> 32, sequence & 0xFFFFFFFF)
    return first + _tag(key, first, payload) + payload


def decode(key: bytes, datagram: bytes):
    """
    Read a frame and check its tag; no replay check (see L{FrameReader}).

    @param key: The sender's L{frameKey}.
    @return: C{(index, sequence, payload)}.
    @raise FrameError: If it is not a frame, or its tag does not verify.
    """
    if len(datagram) < OVERHEAD or datagram[0] != FRAME_TYPE:
        raise FrameError(MALFORMED, "not a frame")
    if len(datagram) > OVERHEAD + MAX_PAYLOAD_BYTES:
        raise FrameError(MALFORMED, f"{len(datagram) - OVERHEAD} bytes of payload")
    word, high, low = _FIRST.unpack_from(datagram)
    payload = datagram[OVERHEAD:]
    if not hmac.compare_digest(_tag(key, datagram[:10], payload), datagram[10:OVERHEAD]):
        raise FrameError(UNAUTHENTICATED, "the tag does not verify")
    return word & 0xFFFFFF, (high << 32) | low, payload


class ReplayWindow:
    """
    The sequence numbers taken, as a bitmap of the L{WINDOW} below the
    highest (RFC 6479's sliding window, in one integer).

    @ivar highest: The highest sequence number taken, or -1.
    """

    __slots__ = ("highest", "_seen", "_size", "_mask")

    def __init__(self, size: int = WINDOW):
        self.highest = -1
        # Bit n set: highest - n was taken.
        self._seen = 0
        self._size = size
        self._mask = (1 << size) - 1

    def fresh(self, sequence: int) -> bool:
        """
        Whether C{sequence} may still be taken: never seen, and within the
        window.  Changes nothing.
        """
        behind = self.highest - sequence
        if behind < 0:
            return True
        return behind < self._size and not (self._seen >> behind) & 1

    def take(self, sequence: int) -> None:
        """
        Mark C{sequence} seen; call only once L{fresh} said so, and the
        frame proved authentic.
        """
        ahead = sequence - self.highest
        if ahead > 0:
            self._seen = ((self._seen << ahead) | 1) & self._mask
            self.highest = sequence
        else:
            self._seen |= 1 << -ahead


class FrameWriter:
    """
    Make the frames of one direction of a path: its key, the receiver's
    index, and the next sequence number.

    @ivar sent: How many frames it made.
    """

    __slots__ = ("_key", "_index", "sent")

    def __init__(self, key: bytes, index: int):
        """
        @param key: The sender's L{frameKey}.
        @param index: The receiver's index.
        """
        self._key = key
        self._index = index
        self.sent = 0

    def frame(self, payload: bytes) -> bytes:
        """
        The next frame, carrying C{payload}.

        @raise ValueError: If C{payload} is larger than L{MAX_PAYLOAD_BYTES}.
        """
        datagram = encode(self._key, self._index, self.sent, payload)
        self.sent += 1
        return datagram


class FrameReader:
    """
    Take the frames of one direction of a path: check each one's tag and
    that it is no replay.
    """

    __slots__ = ("_key", "window")

    def __init__(self, key: bytes, window: int = WINDOW):
        """
        @param key: The sender's L{frameKey}.
        @param window: How far behind the highest sequence number a frame
            may come.
        """
        self._key = key
        self.window = ReplayWindow(window)

    def read(self, datagram: bytes) -> bytes:
        """
        The payload of a frame, once it proved authentic and new.

        @raise FrameError: If it is not a frame, fails its tag, or is a
            replay or too old.
        """
        if len(datagram) < OVERHEAD:
            raise FrameError(MALFORMED, "not a frame")
        high, low = _SEQUENCE.unpack_from(datagram, 4)
        sequence = (high << 32) | low
        # The cheap check first, the tag before anything changes: a forged
        # frame must not move the window.
        if not self.window.fresh(sequence):
            raise FrameError(REPLAYED, f"sequence {sequence}, highest {self.window.highest}")
        _, _, payload = decode(self._key, datagram)
        self.window.take(sequence)
        return payload
