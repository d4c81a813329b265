"""
The byte-by-byte listings of docs/protocol.rst, made by punchd's own
encoders.

    python docs/listings.py           rewrite the listings in protocol.rst
    python docs/listings.py --check   exit 1 if any differs from the code

Each listing in protocol.rst is a paragraph C{"TITLE, N bytes::"} and the
literal block after it; they are replaced, in order, by the datagrams that
L{examples} makes, so a change to the wire format shows up in the document
by running this, never by editing hex by hand.
"""

import sys
from pathlib import Path

from punchd import frames, messages, stun
from punchd.addresses import formatAddress
from punchd.discovery import BehaviourDiscovery
from punchd.compat.introductions import ORIGINAL, encodeOriginalIntroduction
from punchd.greeter import defaultMessage
from punchd.turn import restCredentials

DOCUMENT = Path(__file__).with_name("protocol.rst")

TRANSACTION_ID = bytes.fromhex("b7e7a701bc34d686fa87dfae")
PUNCH_KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
# A cookie of the stage manager's shape (a 4-byte time, then 12 bytes of
# MAC) and a name secret, fixed so that the listings do not change from
# one run to the next.
COOKIE = bytes.fromhex("0000001d8a41f3c2e5b79d0c6f1a2b3c")
SECRET = bytes.fromhex("5ec2e700") * 4
NONCE = bytes.fromhex("0e0ce000") * 4
HANDLE = bytes.fromhex("4a4d1e0000000001")
# The receiver indices bob and alice chose for their path.
BOB_INDEX = 0x3C1B0B
ALICE_INDEX = 0x5A11CE
TURN_SERVER = ("192.0.2.10", 3478)
TURN_SECRET = b"the TURN server's static-auth-secret"
RELAYED = ("192.0.2.10", 49152)
MAPPED = ("198.51.100.1", 40000)
# Dual stack: bob's public IPv6 address, and alice's, beside their IPv4
# NATs' mappings.
BOB6 = ("2001:db8:b::2", 6000)
ALICE6 = ("2001:db8:a::2", 5000)
SYMMETRIC = ("address-and-port-dependent", "address-and-port-dependent")
PORT_RESTRICTED = ("endpoint-independent", "address-and-port-dependent")

_METHODS = {
    stun.BINDING: "Binding",
    messages.REGISTER: "REGISTER",
    messages.UNREGISTER: "UNREGISTER",
    messages.INTRODUCE: "INTRODUCE",
    messages.CANDIDATE: "CANDIDATE",
    messages.REFRESH: "REFRESH",
}
_CLASSES = {
    stun.REQUEST: "request",
    stun.INDICATION: "indication",
    stun.SUCCESS: "success response",
    stun.ERROR: "error response",
}
_NAMES = {
    messages.NAME: "NAME",
    messages.PEER: "PEER",
    messages.LOCAL_ADDRESS: "LOCAL-ADDRESS",
    messages.PEER_ADDRESS: "PEER-ADDRESS",
    messages.PEER_LOCAL_ADDRESS: "PEER-LOCAL-ADDRESS",
    messages.PUNCH_KEY: "PUNCH-KEY",
    messages.LIFETIME: "LIFETIME",
    messages.SEEKING: "SEEKING",
    messages.INDEX: "INDEX",
    messages.PEER_STATE: "PEER-STATE",
    ORIGINAL: "ORIGINAL",
    messages.COOKIE: "COOKIE",
    messages.NAME_SECRET: "NAME-SECRET",
    messages.NAME_NONCE: "NAME-NONCE",
    messages.REFRESH_HANDLE: "REFRESH-HANDLE",
    messages.REFRESH_PROOF: "REFRESH-PROOF",
    messages.TURN_SERVER: "TURN-SERVER",
    messages.TURN_USERNAME: "TURN-USERNAME",
    messages.TURN_PASSWORD: "TURN-PASSWORD",
    messages.TURN_REALM: "TURN-REALM",
    messages.RELAYED_ADDRESS: "RELAYED-ADDRESS",
    messages.MAPPED_ADDRESS: "MAPPED-ADDRESS",
    messages.NAT_BEHAVIOUR: "NAT-BEHAVIOUR",
    messages.SECOND_FAMILY: "SECOND-FAMILY",
    messages.PEER_OTHER_ADDRESS: "PEER-OTHER-ADDRESS",
    stun.USERNAME: "USERNAME",
    stun.MESSAGE_INTEGRITY: "MESSAGE-INTEGRITY",
    stun.ERROR_CODE: "ERROR-CODE",
    stun.XOR_MAPPED_ADDRESS: "XOR-MAPPED-ADDRESS",
    stun.CHANGE_REQUEST: "CHANGE-REQUEST",
    stun.RESPONSE_ORIGIN: "RESPONSE-ORIGIN",
    stun.OTHER_ADDRESS: "OTHER-ADDRESS",
    stun.PADDING: "PADDING",
    stun.FINGERPRINT: "FINGERPRINT",
}
_TEXT = {
    messages.NAME,
    messages.PEER,
    stun.USERNAME,
    messages.TURN_USERNAME,
    messages.TURN_PASSWORD,
    messages.TURN_REALM,
}
_XOR_ADDRESSES = {
    messages.TURN_SERVER,
    messages.RELAYED_ADDRESS,
    messages.MAPPED_ADDRESS,
    messages.LOCAL_ADDRESS,
    messages.PEER_ADDRESS,
    messages.PEER_LOCAL_ADDRESS,
    messages.PEER_OTHER_ADDRESS,
    stun.XOR_MAPPED_ADDRESS,
}
_ADDRESSES = {stun.RESPONSE_ORIGIN, stun.OTHER_ADDRESS}
_FIXED = {
    messages.COOKIE: "4-byte time, 12-byte MAC of the address",
    messages.NAME_SECRET: "16 bytes, given once",
    messages.NAME_NONCE: "16 bytes: the next secret is HMAC(secret, nonce)",
    messages.REFRESH_HANDLE: "8-byte handle, then its lifetime in seconds",
    messages.REFRESH_PROOF: "handle, counter, 12-byte MAC under the refresh key",
    messages.PUNCH_KEY: "16 random bytes",
    stun.MESSAGE_INTEGRITY: "HMAC-SHA1 keyed with the punch key",
    stun.FINGERPRINT: "CRC-32 of the message XOR 0x5354554e",
}
_ROW = 16


def _discoveryAnswer():
    """
    The answer of a stage manager on 192.0.2.10:8080 with an alternate port
    8081 and address 192.0.2.11 to a request to change both.
    """

    class Recorder:
        def __init__(self):
            self.written = []

        def write(self, datagram, address):
            self.written.append(datagram)

    discovery = BehaviourDiscovery(("192.0.2.10", 8080), 8081, "192.0.2.11")
    recorders = {key: Recorder() for key in ((0, 0), (0, 1), (1, 0), (1, 1))}
    for key, recorder in recorders.items():
        discovery.attach(key, recorder.write)
    discovery.answer((0, 0), stun.decode(changeBoth()), ("198.51.100.1", 5000))
    [datagram] = recorders[(1, 1)].written
    return datagram


def changeBoth():
    return stun.encode(
        stun.Message(
            stun.BINDING,
            stun.REQUEST,
            TRANSACTION_ID,
            ((stun.CHANGE_REQUEST, stun.encodeChangeRequest(True, True)),),
        )
    )


def examples():
    """
    The datagrams of the listings, in the document's order.
    """
    txid = TRANSACTION_ID
    alice = messages.Registration("alice", ("bob",), (("10.0.1.2", 5000),), ("bob",))
    return [
        messages.encodeRegistration(txid, alice, messages.UNPROVEN_REGISTRATION_BYTES),
        messages.encodeChallenge(txid, COOKIE),
        messages.encodeRegistration(
            txid,
            messages.Registration(alice.name, alice.wants, alice.localAddresses, alice.seeking, COOKIE),
        ),
        messages.encodeRegistered(
            txid, ("198.51.100.1", 5000), 60, (messages.PEER_WAITING,), COOKIE, SECRET
        ),
        messages.encodeRegistration(
            txid,
            messages.Registration(alice.name, alice.wants, alice.localAddresses, alice.seeking, COOKIE),
            key=messages.registrationKey(SECRET),
        ),
        messages.encodeRegistration(
            txid,
            messages.Registration(
                alice.name, alice.wants, alice.localAddresses, alice.seeking, COOKIE, SYMMETRIC
            ),
            key=messages.registrationKey(SECRET),
        ),
        messages.encodeRegistered(
            txid, ("198.51.100.1", 5000), 60, (messages.PEER_WAITING,), COOKIE, nonce=NONCE
        ),
        messages.encodeRegistered(
            txid, ("198.51.100.1", 5000), 60, (), COOKIE, nonce=NONCE, handle=(HANDLE, 120)
        ),
        messages.encodeRefresh(
            txid, HANDLE, 1, messages.refreshKey(messages.nextSecret(SECRET, NONCE))
        ),
        messages.encodeRefreshed(txid),
        messages.encodeRefreshRefused(txid),
        messages.encodeRegistration(
            txid,
            messages.Registration(alice.name, cookie=COOKIE, secondFamily=True),
            messages.UNPROVEN_REGISTRATION_BYTES,
            messages.registrationKey(messages.nextSecret(SECRET, NONCE)),
        ),
        messages.encodeRegistered(txid, ALICE6, 60, cookie=COOKIE),
        messages.encodeError(
            messages.REGISTER,
            txid,
            messages.NAME_TAKEN,
            "alice is registered; only the holder of its secret can register it",
        ),
        messages.encodeIntroduction(
            txid,
            messages.Introduction(
                "bob", ("203.0.113.1", 6000), (("10.0.2.2", 6000),), PUNCH_KEY
            ),
            messages.introductionKey(SECRET),
        ),
        messages.encodeIntroduction(
            txid,
            messages.Introduction(
                "bob",
                ("203.0.113.1", 6000),
                (("10.0.2.2", 6000),),
                PUNCH_KEY,
                nat=PORT_RESTRICTED,
            ),
            messages.introductionKey(SECRET),
        ),
        messages.encodeIntroduction(
            txid,
            messages.Introduction(
                "bob", ("203.0.113.1", 6000), (), PUNCH_KEY, otherAddress=BOB6
            ),
            messages.introductionKey(SECRET),
        ),
        messages.encodeIntroduction(
            txid,
            messages.Introduction("bob", BOB6, (), PUNCH_KEY),
            messages.introductionKey(SECRET),
        ),
        messages.encodeIntroduction(
            txid,
            messages.Introduction(
                "bob",
                ("203.0.113.1", 6000),
                (("10.0.2.2", 6000),),
                PUNCH_KEY,
                messages.TurnCredentials(
                    TURN_SERVER, *restCredentials(TURN_SECRET, "alice", 1764637200, 3600), "punchd"
                ),
            ),
            messages.introductionKey(SECRET),
        ),
        messages.encodeCandidate(
            txid,
            messages.RelayCandidate("alice", RELAYED, "bob", SYMMETRIC),
            messages.introductionKey(SECRET),
        ),
        messages.encodeCandidate(
            txid,
            messages.RelayCandidate("alice", RELAYED, None, SYMMETRIC),
            messages.introductionKey(SECRET),
        ),
        messages.encodeCandidate(
            txid,
            messages.RelayCandidate("alice", MAPPED, "bob", SYMMETRIC, mapped=True),
            messages.introductionKey(SECRET),
        ),
        messages.encodeCandidate(
            txid,
            messages.RelayCandidate("alice", None, "bob", SYMMETRIC),
            messages.introductionKey(SECRET),
        ),
        messages.encodeCandidate(
            txid,
            messages.RelayCandidate("bob", BOB6, other=True),
            messages.introductionKey(SECRET),
        ),
        messages.encodeUnregister(txid, "alice", SECRET),
        messages.encodeProbe(txid, "bob", "alice", PUNCH_KEY, ALICE_INDEX),
        messages.encodeProbeAnswer(txid, ("198.51.100.1", 5000), PUNCH_KEY, BOB_INDEX),
        frames.encode(
            frames.frameKey(PUNCH_KEY, "alice", "bob"),
            BOB_INDEX,
            41,
            defaultMessage("alice", "bob").encode(),
        ),
        messages.BARE_BINDING_REQUEST + txid,
        messages.bareBindingAnswer(txid, ("198.51.100.1", 5000)),
        changeBoth(),
        _discoveryAnswer(),
        encodeOriginalIntroduction(
            txid, "bob", ("203.0.113.1", 6000), messages.introductionKey(SECRET)
        ),
    ]


def _describe(attrType, value, txid, method):
    name = _NAMES[attrType]
    if attrType in _TEXT:
        return f"{name}: {value.decode('utf-8')!r}"
    if attrType in _XOR_ADDRESSES:
        return f"{name}: {formatAddress(stun.decodeXorAddress(value, txid))} (XOR-ed)"
    if attrType in _ADDRESSES:
        host, port = stun.decodeAddress(value)
        return f"{name}: {host}:{port}"
    if attrType == stun.MESSAGE_INTEGRITY and method == messages.INTRODUCE:
        return f"{name}: HMAC-SHA1 keyed with the recipient's introduction key"
    if attrType == stun.MESSAGE_INTEGRITY and method in (messages.REGISTER, messages.UNREGISTER):
        return f"{name}: HMAC-SHA1 keyed with the name's registration key"
    if attrType == stun.MESSAGE_INTEGRITY and method == messages.CANDIDATE:
        return f"{name}: HMAC-SHA1 keyed with the sender's or recipient's introduction key"
    if attrType == messages.NAT_BEHAVIOUR:
        return f"{name}: mapping {value[0]}, filtering {value[1]}"
    if attrType in _FIXED:
        return f"{name}: {_FIXED[attrType]}"
    if not value:
        return f"{name} (empty)"
    if attrType == stun.PADDING:
        return f"{name}: {len(value)} zero bytes (elided)"
    if attrType == messages.LIFETIME:
        return f"{name}: {int.from_bytes(value, 'big')} s"
    if attrType == messages.INDEX:
        return f"{name}: 0x{int.from_bytes(value, 'big'):06x}, the sender's receiver index"
    if attrType == messages.PEER_STATE:
        return f"{name}: {value[0]}"
    if attrType == stun.ERROR_CODE:
        code, reason = stun.decodeErrorCode(value)
        return f"{name}: {code} {reason!r}"
    if attrType == stun.CHANGE_REQUEST:
        changeIP, changePort = stun.decodeChangeRequest(value)
        return f"{name}: change IP {changeIP}, change port {changePort}"
    raise ValueError(f"no description for attribute 0x{attrType:04x}")


def _rows(offset, data, note, elide=False):
    rows = []
    for start in range(0, len(data), _ROW):
        chunk = data[start : start + _ROW]
        rows.append(f"    {offset + start:04x}  {chunk.hex(' '):<47}   {note}")
        note = ""
        if elide:
            break
    return rows


def title(datagram):
    if frames.isFrame(datagram):
        return "Data frame"
    message = stun.decode(datagram)
    return f"{_METHODS[message.method]} {_CLASSES[message.messageClass]}"


def listing(datagram):
    """
    The listing of one datagram: its title line, a blank line, and a line
    for each part of its header and up to 16 bytes of each attribute.
    """
    if frames.isFrame(datagram):
        return _frameListing(datagram)
    message = stun.decode(datagram)
    messageType = int.from_bytes(datagram[:2], "big")
    lines = [f"{title(datagram)}, {len(datagram)} bytes::", ""]
    lines += _rows(
        0,
        datagram[:4],
        f"type 0x{messageType:04x} ({title(datagram)}), length {len(datagram) - 20}",
    )
    lines += _rows(4, datagram[4:8], "magic cookie")
    lines += _rows(8, datagram[8:20], "transaction id")
    offset = 20
    for attrType, value in message.attributes:
        size = 4 + ((len(value) + 3) & ~3)
        lines += _rows(
            offset,
            datagram[offset : offset + size],
            _describe(attrType, value, message.transactionID, message.method),
            elide=attrType == stun.PADDING,
        )
        offset += size
    return lines


def _frameListing(datagram):
    index, sequence, payload = frames.decode(
        frames.frameKey(PUNCH_KEY, "alice", "bob"), datagram
    )
    lines = [f"{title(datagram)}, {len(datagram)} bytes::", ""]
    lines += _rows(0, datagram[:1], f"type 0x{datagram[0]:02x} (data frame)")
    lines += _rows(1, datagram[1:4], f"receiver index 0x{index:06x}")
    lines += _rows(4, datagram[4:10], f"sequence number {sequence}")
    lines += _rows(10, datagram[10:20], "tag: keyed BLAKE2b-80 of bytes 0-9 and the payload")
    lines += _rows(20, payload, f"payload: {payload.decode('utf-8')!r}")
    return lines


def rewrite(text):
    """
    C{text}, a document, with each listing replaced by the one the code
    makes.
    """
    lines = text.split("\n")
    made = iter(examples())
    out = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if not (line.endswith(" bytes::") and ", " in line):
            out.append(line)
            index += 1
            continue
        out += listing(next(made))
        # Past the title, the blank line and the indented block.
        index += 2
        while index < len(lines) and lines[index].startswith("    "):
            index += 1
    if next(made, None) is not None:
        raise ValueError("the document has fewer listings than there are examples")
    return "\n".join(out)


def main(argv):
    text = DOCUMENT.read_text(encoding="utf-8")
    fresh = rewrite(text)
    if argv[1:] == ["--check"]:
        if fresh != text:
            print(f"{DOCUMENT}: the listings differ from the code;"
                  f" run python {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
