"""
The stage manager's introduction of a native peer to an original
C{test-client}: an C{INTRODUCE} request with the client's name and public
mapping, no punch key, and the empty attribute L{ORIGINAL}, signed as every
introduction is (L{punchd.messages.introductionKey}).
"""

from punchd import messages, stun

#: Empty: the introduced peer is an original C{test-client}, to be spoken to
#: in the original programs' text messages; the introduction has no
#: C{PUNCH-KEY}.
ORIGINAL = 0xC00B


def encodeOriginalIntroduction(transactionID: bytes, name: str, address, key: bytes) -> bytes:
    """
    Encode the introduction of the original client C{name} at C{address}.

    @param key: The recipient's L{punchd.messages.introductionKey}.
    """
    return stun.encode(
        stun.Message(
            messages.INTRODUCE,
            stun.REQUEST,
            transactionID,
            (
                (messages.NAME, name.encode("utf-8")),
                (messages.PEER_ADDRESS, stun.encodeXorAddress(*address, transactionID)),
                (ORIGINAL, b""),
            ),
        ),
        integrityKey=key,
        fingerprint=True,
    )


def parseOriginalIntroduction(message: stun.Message):
    """
    Read an C{INTRODUCE} request, if it introduces an original client.

    @return: C{(name, address)}, or L{None} if it does not carry
        L{ORIGINAL}.
    @raise messages.InvalidMessage: If it does, but breaks a rule.
    """
    if message.get(ORIGINAL) is None:
        return None
    if message.get(messages.PUNCH_KEY) is not None:
        raise messages.InvalidMessage("introduction of an original peer has a PUNCH-KEY")
    address = message.get(messages.PEER_ADDRESS)
    if address is None:
        raise messages.InvalidMessage("introduction lacks PEER-ADDRESS")
    return (
        messages.readName(message, messages.NAME, "NAME"),
        messages.readAddress(address, message.transactionID, "PEER-ADDRESS"),
    )
