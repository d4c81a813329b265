"""
Tests for L{punchd.relay}: introductions across stage managers.
"""

from collections import Counter

from twisted.internet.defer import fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.phonebook import Entry
from punchd.redisbook import SharedEntry

BOB = ("203.0.113.1", 50000)
INTRODUCTION = messages.Introduction("alice", ("198.51.100.1", 40000), (("10.0.0.2", 1),), b"k" * 16)


class FakeStore:
    """
    Stands in for L{punchd.redisstore.RedisStore}: records what is
    published and answers with C{listeners}.
    """

    def __init__(self, listeners=1):
        self.stats = Counter()
        self.published = []
        self.channels = {}
        self.listeners = listeners

    def subscribe(self, channel, receive):
        self.channels[channel] = receive

    def publish(self, channel, message):
        self.published.append((channel, message))
        if isinstance(self.listeners, Exception):
            return fail(self.listeners)
        return succeed(self.listeners)


class FakeStageManager:
    """
    Records the introductions it is asked to send.
    """

    def __init__(self):
        self.sent = []

    def sendIntroduction(self, to, encode):
        self.sent.append((to, encode))


def held(name, address, holder, secret=b"s" * 16, previous=None):
    entry = SharedEntry.__new__(SharedEntry)
    Entry.__init__(entry, name, address, (), (), 0.0, True, secret, previous)
    entry.holder = holder
    return entry


class RelayTests(SynchronousTestCase):
    """
    L{IntroductionRelay}.
    """

    def setUp(self):
        from punchd.relay import IntroductionRelay

        self.store = FakeStore()
        self.relay = IntroductionRelay(self.store, "m1", prefix="t:")
        self.stageManager = FakeStageManager()
        self.relay.attach(self.stageManager)

    def test_elsewhere(self):
        """
        An entry held by another stage manager is elsewhere; one held here,
        or one of the in-memory phonebook, is not.
        """
        self.assertTrue(self.relay.elsewhere(held("bob", BOB, "m2")))
        self.assertFalse(self.relay.elsewhere(held("bob", BOB, "m1")))
        self.assertFalse(self.relay.elsewhere(Entry("bob", BOB, (), (), 0.0)))

    def test_relayedAndSent(self):
        """
        An introduction for a peer held elsewhere is published on its
        holder's channel; the holder sends it, signed for the peer.
        """
        from punchd.relay import IntroductionRelay

        self.relay.relay(held("bob", BOB, "m2", b"s" * 16, b"p" * 16), INTRODUCTION)
        [(channel, message)] = self.store.published
        self.assertEqual(channel, "t:intro:m2")
        other = FakeStageManager()
        holder = IntroductionRelay(FakeStore(), "m2", prefix="t:")
        holder.attach(other)
        holder.store.channels["t:intro:m2"](message)
        [(to, encode)] = other.sent
        self.assertEqual(
            (to.name, to.address, to.secret, to.previousSecret), ("bob", BOB, b"s" * 16, b"p" * 16)
        )
        datagram = encode(b"t" * 12, messages.introductionKey(to.previousSecret))
        self.assertEqual(messages.parseIntroduction(stun.decode(datagram)), INTRODUCTION)
        self.assertEqual((self.store.stats["relayedOut"], holder.stats["relayedIn"]), (1, 1))
        self.assertEqual(self.stageManager.sent, [])

    def test_natBehaviourRelayed(self):
        """
        The NAT behaviour an introduction carries crosses to the holder.
        """
        from punchd.relay import decodeRelayed, encodeRelayed

        introduction = messages.Introduction(
            "alice", ("198.51.100.1", 40000), (), b"k" * 16,
            nat=messages.readBehaviour(b"\x02\x02")[0],
        )
        _, relayed = decodeRelayed(encodeRelayed(held("bob", BOB, "m2"), introduction))
        self.assertEqual(relayed, introduction)

    def test_otherFamilyRelayed(self):
        """
        The introduced peer's address of the other family crosses to the
        holder.
        """
        from punchd.relay import decodeRelayed, encodeRelayed

        introduction = messages.Introduction(
            "alice", ("198.51.100.1", 40000), (), b"k" * 16, otherAddress=("2001:db8:a::2", 5000)
        )
        _, relayed = decodeRelayed(encodeRelayed(held("bob", BOB, "m2"), introduction))
        self.assertEqual(relayed, introduction)

    def test_unheardSentFromHere(self):
        """
        With nobody listening on the holder's channel, or Redis out of
        reach, the introduction is sent from here.
        """
        from punchd.redisstore import StoreUnavailable

        self.store.listeners = 0
        self.relay.relay(held("bob", BOB, "m2"), INTRODUCTION)
        self.store.listeners = StoreUnavailable("down")
        self.relay.relay(held("bob", BOB, "m2"), INTRODUCTION)
        self.assertEqual([to.name for to, _ in self.stageManager.sent], ["bob", "bob"])
        self.assertEqual(self.store.stats["relayedUnheard"], 1)

    def test_garbageDropped(self):
        """
        A message on the channel that is not a relayed introduction is
        dropped.
        """
        self.store.channels["t:intro:m1"](b"{not json")
        self.store.channels["t:intro:m1"](b"[1, 2]")
        self.assertEqual(self.stageManager.sent, [])
