"""
Peer identity from a secret the two peers share out of band
(C{punch-peer --peer-secret-file}).

With it, each peer registers under a name derived from the secret and its
clear name, and seeks the name derived from its contact's: nobody without
the secret can compute either, so a squatter cannot take the name first,
and the stage manager learns neither clear name.  The punch key is derived
from the introduction's key and the secret, so that the stage manager,
which made the introduction's key, cannot pass for either peer or inject
datagrams into the path.  Nothing is encrypted.
"""

import hashlib
import hmac

#: The fewest bytes a peer secret may have, white space around it aside.
MIN_SECRET_BYTES = 16

#: The first character of a derived name, which makes it a name a clear
#: name written by hand is unlikely to be.
NAME_PREFIX = "p"


def _mac(secret: bytes, label: bytes, value: bytes) -> bytes:
    return hmac.new(secret, label + b"\0" + value, hashlib.sha256).digest()


def derivedName(secret: bytes, name: str) -> str:
    """
    The name a peer called C{name} registers under with the stage manager.

    @param secret: The shared secret.
    @param name: The clear name, as people read it.
    @return: C{"p"} and 40 hex digits of C{HMAC-SHA256(secret, "punchd
        name\\0" + name)}: a name L{punchd.messages.validateName} accepts.
    """
    return NAME_PREFIX + _mac(secret, b"punchd name", name.encode("utf-8"))[:20].hex()


def punchKey(secret: bytes, introductionKey: bytes) -> bytes:
    """
    The key of every probe and answer on the path, and the key the keys of
    its data frames are derived from (L{punchd.frames.frameKey}).

    @param secret: The shared secret.
    @param introductionKey: The punch key of the stage manager's
        introduction.
    @return: The first 16 bytes of C{HMAC-SHA256(secret, "punchd punch\\0"
        + introductionKey)}.
    """
    return _mac(secret, b"punchd punch", introductionKey)[:16]
