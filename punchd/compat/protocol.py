"""
The original programs' text protocol, as ``test-server`` and
``test-client`` speak it on the wire.

  - A registration is a datagram holding a name, with nothing around it
    (the server takes the text up to the first CR, LF or space).
  - The server answers with one datagram per phonebook entry, each one line:
    C{SLOT,COUNT,NAME,IPV4,PORT\\n}.
  - Clients send each other C{This is a direct P2P message from NAME to
    CONTACT}, once a second, and print whatever arrives.

There is no authentication of any kind in it: a name is taken by whoever
says it, and a direct message comes from whoever sent it.

A punchd datagram is always a STUN message, whose first byte is 0 to 3; a
name never starts with a control character, so L{isText} tells the two
protocols apart on one port.

Every function here is pure: no I/O and no clock.
"""

from dataclasses import dataclass
from ipaddress import IPv4Address

from punchd import stun
from punchd.messages import InvalidMessage, utf8Prefix, validateName

#: The longest datagram the original programs read.
MAX_DATAGRAM = 1023

#: The original server's phonebook: 16 slots.
ORIGINAL_SLOTS = 16

_NAME_ENDS = (b"\r", b"\n", b" ")


class MalformedLine(ValueError):
    """
    A datagram from the server that is not a phonebook line.
    """


def isText(datagram: bytes) -> bool:
    """
    Whether a datagram is of the original text protocol rather than STUN.
    """
    return not stun.looksLikeStun(datagram)


def parseRegistration(datagram: bytes) -> str:
    """
    Read the name an original client registers, as the original server
    does: the text up to the first CR, LF or space, of the first
    L{MAX_DATAGRAM} bytes.

    Unlike the original, an empty name, one that breaks punchd's rules for
    names, or one with a comma (which would break the phonebook lines) is
    refused rather than registered.

    @return: The name.
    @raise InvalidMessage: If there is no name, or it breaks a rule.
    """
    name = datagram[:MAX_DATAGRAM]
    for end in _NAME_ENDS:
        name = name.split(end, 1)[0]
    text = validateName(name)
    if not fitsLine(text):
        raise InvalidMessage(f"name {text!r} has a comma")
    return text


def fitsLine(name: str) -> bool:
    """
    Whether a name can stand in a phonebook line: it has no comma.
    """
    return "," not in name


def encodeRegistration(name: str) -> bytes:
    """
    The registration an original client sends: its name, and nothing else.
    """
    return name.encode("utf-8")


@dataclass(frozen=True)
class PhonebookLine:
    """
    One line of the original server's answer.

    @ivar slot: The entry's slot, counted from 0.
    @ivar count: How many entries the answer holds.
    @ivar name: The entry's name.
    @ivar address: Its C{(host, port)}, an IPv4 address.
    """

    slot: int
    count: int
    name: str
    address: tuple

    def __str__(self) -> str:
        return f"{self.slot},{self.count},{self.name},{self.address[0]},{self.address[1]}"


def formatLine(line: PhonebookLine) -> bytes:
    """
    Encode a phonebook line as the original server sends it, newline and
    all.
    """
    return f"{line}\n".encode("utf-8")


def parseLine(datagram: bytes) -> PhonebookLine:
    """
    Read a phonebook line.

    Stricter than the original client, which reads whatever it is given:
    the line must have exactly five fields, the slot must be below the
    count, the name must follow punchd's rules for names, the address must
    be a dotted-quad IPv4 address and the port 1 to 65535.  A trailing
    newline (LF or CR LF) and trailing NUL bytes are allowed.

    @raise MalformedLine: If it is not such a line; the message says why.
    """
    text = datagram.rstrip(b"\0")
    if text.endswith(b"\n"):
        text = text[:-1]
    if text.endswith(b"\r"):
        text = text[:-1]
    if b"\n" in text or b"\r" in text:
        raise MalformedLine("more than one line")
    fields = text.split(b",")
    if len(fields) != 5:
        raise MalformedLine(f"{len(fields)} comma-separated fields, not 5")
    slotText, countText, nameText, hostText, portText = fields
    slot = _decimal(slotText, "slot")
    count = _decimal(countText, "count")
    if not slot < count:
        raise MalformedLine(f"slot {slot} is not below the count {count}")
    try:
        name = validateName(nameText)
    except InvalidMessage as e:
        raise MalformedLine(e.reason) from None
    try:
        host = str(IPv4Address(hostText.decode("ascii")))
    except (UnicodeDecodeError, ValueError):
        raise MalformedLine(f"{_shown(hostText)} is not an IPv4 address") from None
    port = _decimal(portText, "port")
    if not 0 < port < 65536:
        raise MalformedLine(f"port {port} is not between 1 and 65535")
    return PhonebookLine(slot, count, name, (host, port))


def _decimal(text: bytes, what: str) -> int:
    # int() would also take "+1", " 1" and "1_000".
    if not text.isdigit() or len(text) > 9:
        raise MalformedLine(f"{what} {_shown(text)} is not a decimal number")
    return int(text)


def _shown(text: bytes) -> str:
    return ascii(text.decode("utf-8", "replace"))


def directMessage(name: str, contact: str) -> str:
    """
    The direct message the original client sends its contact.
    """
    return f"This is a direct P2P message from {name} to {contact}"


def encodeDirectMessage(text: str) -> bytes:
    """
    Encode a direct message as the original client sends it: the text,
    without a newline, cut to what the original reads, at a character
    boundary.
    """
    return utf8Prefix(text, MAX_DATAGRAM)


def decodeDirectMessage(datagram: bytes) -> str:
    """
    Read a direct message from an original client: text of any kind, so
    bytes that are not UTF-8 are replaced rather than refused.
    """
    return datagram.decode("utf-8", "replace")
