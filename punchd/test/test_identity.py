"""
Tests for L{punchd.identity}.
"""

import hashlib
import hmac

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from twisted.trial.unittest import SynchronousTestCase

from punchd import frames, identity, messages
from punchd.punching import UP
from punchd.test.helpers import World
from punchd.testing import portRestrictedCone

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


class SecretWorld(World):
    """
    A L{World} whose peers each have a peer secret of their own, or none.
    """

    def __init__(self, secrets, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.secrets = secrets

    def startPeer(self, name, wants, port):
        self.punchSettings = dict(self.punchSettings, peerSecret=self.secrets.get(name))
        return super().startPeer(name, wants, port)


def upTimes(secrets):
    world = SecretWorld(secrets, portRestrictedCone(), portRestrictedCone())
    start = world.start(gap=1)
    world.network.advance(10)
    return world, [t - start for name in ("alice", "bob") for t in world.when(name, "pathUp")]


class PeerSecretTests(SynchronousTestCase):
    """
    Peers with a shared secret, and those who do not have it.
    """

    def test_connectsAsFast(self):
        """
        Alice and bob with the same secret connect, as fast as without it.
        """
        world, withSecret = upTimes({"alice": SECRET, "bob": SECRET})
        _, without = upTimes({})
        self.assertEqual(len(withSecret), 2)
        self.assertEqual(withSecret, without)
        self.assertEqual(world.alice.punch.peerName, "bob")

    def test_differentSecretsNeverConnect(self):
        """
        Peers with different secrets are never introduced.
        """
        world, up = upTimes({"alice": SECRET, "bob": SECRET + b"?"})
        world.network.advance(60)
        self.assertEqual((up, world.alice.punch, world.bob.punch), ([], None, None))

    def test_squatterGetsNothing(self):
        """
        A squatter registering "bob" in clear is never introduced to alice.
        """
        world, up = upTimes({"alice": SECRET})
        world.network.advance(60)
        self.assertEqual((up, world.alice.punch, world.bob.punch), ([], None, None))

    def test_stageManagerCannotInject(self):
        """
        A frame keyed from the introduction's key, which the stage manager
        knows, is dropped by alice.
        """
        world = SecretWorld({"alice": SECRET, "bob": SECRET}, None, None)
        keys = []
        original = messages.parseIntroduction

        def recording(message):
            introduction = original(message)
            keys.append(introduction.key)
            return introduction

        self.patch(messages, "parseIntroduction", recording)
        world.start(gap=1)
        world.network.advance(3)
        self.assertEqual(world.alice.punch.state, UP)
        received = len(world.alice.application.received)
        forged = frames.encode(
            frames.frameKey(keys[0], world.bob._wireName, world.alice._wireName),
            world.alice.punch.index,
            10**6,
            b"forged",
        )
        world.alice.datagramReceived(forged, world.alice.punch.selected.address)
        self.assertEqual(world.alice.drops.counts[frames.UNAUTHENTICATED], 1)
        self.assertEqual(len(world.alice.application.received), received)
        self.assertEqual(world.alice.punch.state, UP)
        self.assertNotIn(b"forged", [t.encode() for t, _ in world.alice.application.received])

    def test_startSaysWhetherVerified(self):
        """
        At start a peer says its contact's identity is verified by the
        shared secret, or plainly that it is not.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        world = SecretWorld({"alice": SECRET}, None, None)
        world.start(gap=1)
        said = [e["log_format"].format(**e) for e in events if "identity" in e["log_format"]]
        self.assertEqual(
            said,
            [
                "The identity of bob is verified by the shared secret",
                "The identity of alice is not verified: anyone who registers the name"
                " alice first could pass for it. Share a secret with it"
                " (--peer-secret-file) to verify it.",
            ],
        )
