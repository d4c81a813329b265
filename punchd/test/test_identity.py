"""
Tests for L{punchd.identity}.
"""

import hashlib
import hmac

from twisted.trial.unittest import SynchronousTestCase

from punchd import identity, messages

SECRET = b"correct horse battery staple"


class DerivationTests(SynchronousTestCase):
    """
    The names and keys derived from a peer secret.
    """

    def test_derivedNameVector(self):
        """
        A derived name is "p" and the first 20 bytes of the HMAC, in hex.
        """
        mac = hmac.new(SECRET, b"punchd name\0alice", hashlib.sha256).hexdigest()[:40]
        self.assertEqual(identity.derivedName(SECRET, "alice"), "p" + mac)
        self.assertEqual(
            identity.derivedName(SECRET, "alice"), "pddc863e0ef242253ae14e4a2d62c092abb9ef742"
        )

    def test_derivedNameIsValid(self):
        """
        A derived name is a name the stage manager accepts, and differs
        with the name and with the secret.
        """
        name = identity.derivedName(SECRET, "alice")
        self.assertEqual(messages.validateName(name.encode("ascii")), name)
        self.assertEqual(len(name), 41)
        self.assertNotEqual(name, identity.derivedName(SECRET, "bob"))
        self.assertNotEqual(name, identity.derivedName(SECRET + b"!", "alice"))

    def test_punchKeyVector(self):
        """
        The punch key is the first 16 bytes of the HMAC of the
        introduction's key.
        """
        key = bytes(range(16))
        mac = hmac.new(SECRET, b"punchd punch\0" + key, hashlib.sha256).digest()[:16]
        self.assertEqual(identity.punchKey(SECRET, key), mac)
        self.assertEqual(identity.punchKey(SECRET, key).hex(), "8d40a3df3936e4180f649541bf9b8119")
        self.assertNotEqual(identity.punchKey(SECRET, key), key)
