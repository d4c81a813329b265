"""
Tests for L{punchd.frames}: the data frame codec, its keys and its replay
window.
"""

import random

from twisted.trial.unittest import SynchronousTestCase

from punchd import frames, stun
from punchd.test.optional import given, settings, st

KEY = frames.frameKey(b"k" * 16, "alice", "bob")
FUZZ = settings(max_examples=300, deadline=None)


class LayoutTests(SynchronousTestCase):
    """
    A frame's bytes.
    """

    def test_layout(self):
        """
        A frame is 0x08, the 24-bit receiver index, the 48-bit sequence
        number, a 10-byte tag, then the payload as it is.
        """
        datagram = frames.encode(KEY, 0xABCDEF, 0x010203040506, b"payload")
        self.assertEqual(datagram[:10], bytes.fromhex("08abcdef010203040506"))
        self.assertEqual(datagram[20:], b"payload")
        self.assertEqual(len(datagram), frames.OVERHEAD + 7)

    def test_overhead(self):
        """
        The overhead is 20 bytes: WireGuard's largest datagram at MTU 1420,
        1452 bytes, fills a 1500-byte IPv4 packet exactly.
        """
        self.assertEqual(frames.OVERHEAD, 20)
        datagram = frames.encode(KEY, 1, 0, bytes(1420 + 32))
        self.assertEqual(20 + 8 + len(datagram), 1500)
        self.assertEqual(frames.MAX_PAYLOAD_BYTES, 1452)

    def test_notSTUN(self):
        """
        A frame is never taken for STUN, nor any protocol RFC 7983 and RFC
        9443 name: its first byte is in 4-15.
        """
        datagram = frames.encode(KEY, 0, 0, bytes(16))
        self.assertFalse(stun.looksLikeStun(datagram))
        self.assertIn(datagram[0], range(4, 16))
        self.assertTrue(frames.isFrame(datagram))
        self.assertFalse(frames.isFrame(stun.encode(stun.Message(stun.BINDING, stun.REQUEST, bytes(12)))))

    def test_receiverIndex(self):
        """
        The receiver index is read without the key.
        """
        self.assertEqual(frames.receiverIndex(frames.encode(KEY, 77, 5, b"x")), 77)
        with self.assertRaises(frames.FrameError) as caught:
            frames.receiverIndex(b"\x08\x00\x00\x01")
        self.assertEqual(caught.exception.reason, frames.MALFORMED)

    def test_tooLarge(self):
        """
        A payload larger than the maximum is refused, saying the maximum,
        rather than cut.
        """
        frames.encode(KEY, 0, 0, bytes(frames.MAX_PAYLOAD_BYTES))
        with self.assertRaises(ValueError) as caught:
            frames.encode(KEY, 0, 0, bytes(frames.MAX_PAYLOAD_BYTES + 1))
        self.assertIn("at most 1452 bytes", str(caught.exception))

    def test_lastSequence(self):
        """
        The last sequence number is 2**48 - 1; past it a path sends no more.
        """
        datagram = frames.encode(KEY, 0, frames.MAX_SEQUENCE, b"")
        self.assertEqual(frames.decode(KEY, datagram)[1], frames.MAX_SEQUENCE)
        self.assertRaises(OverflowError, frames.encode, KEY, 0, frames.MAX_SEQUENCE + 1, b"")


class KeyTests(SynchronousTestCase):
    """
    Each direction of each path has a key of its own.
    """

    def test_directions(self):
        """
        The key of alice's frames to bob is not the key of bob's to alice,
        nor of another punch key's.
        """
        punchKey = b"k" * 16
        keys = {
            frames.frameKey(punchKey, "alice", "bob"),
            frames.frameKey(punchKey, "bob", "alice"),
            frames.frameKey(b"j" * 16, "alice", "bob"),
        }
        self.assertEqual(len(keys), 3)

    def test_derivation(self):
        """
        The key is HMAC-SHA256 of the punch key over the label and names.
        """
        import hmac

        self.assertEqual(
            frames.frameKey(b"k" * 16, "alice", "bob"),
            hmac.digest(b"k" * 16, b"punchd frame\0alice\0bob", "sha256"),
        )

    def test_reflectedFrameRefused(self):
        """
        A frame sent back to its sender fails the tag of the other
        direction.
        """
        datagram = frames.encode(KEY, 1, 0, b"x")
        reader = frames.FrameReader(frames.frameKey(b"k" * 16, "bob", "alice"))
        with self.assertRaises(frames.FrameError) as caught:
            reader.read(datagram)
        self.assertEqual(caught.exception.reason, frames.UNAUTHENTICATED)


class TamperingTests(SynchronousTestCase):
    """
    A frame changed on the way is refused.
    """

    def test_everyBitFlip(self):
        """
        Flipping any one bit of a frame's index, sequence, tag or payload
        makes it fail.
        """
        datagram = frames.encode(KEY, 5, 9, b"hello")
        for offset in range(1, len(datagram)):
            for bit in range(8):
                changed = bytearray(datagram)
                changed[offset] ^= 1 << bit
                with self.assertRaises(frames.FrameError, msg=(offset, bit)) as caught:
                    frames.decode(KEY, bytes(changed))
                self.assertEqual(caught.exception.reason, frames.UNAUTHENTICATED)

    def test_cutOrExtended(self):
        """
        A frame cut short or extended fails.
        """
        datagram = frames.encode(KEY, 5, 9, b"hello")
        for bad in (datagram[:-1], datagram + b"\x00", datagram[:19]):
            self.assertRaises(frames.FrameError, frames.decode, KEY, bad)

    def test_wrongKey(self):
        """
        A frame made with another key fails.
        """
        datagram = frames.encode(frames.frameKey(b"x" * 16, "alice", "bob"), 5, 9, b"hello")
        self.assertRaises(frames.FrameError, frames.decode, KEY, datagram)


class ReplayTests(SynchronousTestCase):
    """
    L{frames.FrameReader}: each sequence number is taken once, within the
    window.
    """

    def setUp(self):
        self.reader = frames.FrameReader(KEY, window=64)

    def frame(self, sequence, payload=b"p"):
        return frames.encode(KEY, 1, sequence, payload)

    def assertRefused(self, datagram, reason):
        with self.assertRaises(frames.FrameError) as caught:
            self.reader.read(datagram)
        self.assertEqual(caught.exception.reason, reason)

    def test_replayRefused(self):
        """
        A frame taken once is refused the second time.
        """
        datagram = self.frame(0)
        self.assertEqual(self.reader.read(datagram), b"p")
        self.assertRefused(datagram, frames.REPLAYED)

    def test_reorderingWithinWindow(self):
        """
        Frames that come out of order, within the window, are each taken
        once.
        """
        order = list(range(60))
        random.Random(1).shuffle(order)
        for sequence in order:
            self.assertEqual(self.reader.read(self.frame(sequence, b"%d" % sequence)), b"%d" % sequence)
        for sequence in order:
            self.assertRefused(self.frame(sequence), frames.REPLAYED)

    def test_tooOld(self):
        """
        A frame a window or more behind the highest taken is refused, one
        just inside it is taken.
        """
        self.reader.read(self.frame(100))
        self.assertRefused(self.frame(36), frames.REPLAYED)
        self.assertEqual(self.reader.read(self.frame(37)), b"p")

    def test_jumpAhead(self):
        """
        A jump of more than the window forgets what was below it, and the
        frames in the new window are taken.
        """
        self.reader.read(self.frame(3))
        self.reader.read(self.frame(1000))
        self.assertRefused(self.frame(3), frames.REPLAYED)
        self.assertEqual(self.reader.read(self.frame(999)), b"p")
        self.assertRefused(self.frame(1000), frames.REPLAYED)

    def test_forgeryDoesNotMoveWindow(self):
        """
        A forged frame with a high sequence number is refused and does not
        push genuine frames out of the window.
        """
        self.reader.read(self.frame(10))
        forged = bytearray(self.frame(10 ** 9))
        forged[-1] ^= 1
        self.assertRefused(bytes(forged), frames.UNAUTHENTICATED)
        self.assertEqual(self.reader.read(self.frame(9)), b"p")

    def test_defaultWindow(self):
        """
        By default a frame 2047 behind is taken, 2048 behind is not.
        """
        reader = frames.FrameReader(KEY)
        reader.read(self.frame(5000))
        reader.read(self.frame(5000 - 2047))
        self.assertRaises(frames.FrameError, reader.read, self.frame(5000 - 2048))


class FreeIndexTests(SynchronousTestCase):
    """
    L{frames.freeIndex}.
    """

    def test_notTaken(self):
        """
        A new index is never one taken, and fits 24 bits.
        """
        draws = iter([7, 7, 9])
        self.assertEqual(frames.freeIndex({7: None}, lambda bits: next(draws)), 9)
        for _ in range(100):
            self.assertLess(frames.freeIndex({}), 1 << 24)


class PropertyTests(SynchronousTestCase):
    """
    Round trips and fuzzing, with Hypothesis.
    """

    @FUZZ
    @given(
        st.integers(0, (1 << 24) - 1),
        st.integers(0, frames.MAX_SEQUENCE),
        st.binary(max_size=frames.MAX_PAYLOAD_BYTES),
    )
    def test_roundTrip(self, index, sequence, payload):
        """
        Whatever is encoded decodes to the same index, sequence and payload.
        """
        datagram = frames.encode(KEY, index, sequence, payload)
        self.assertEqual(len(datagram), frames.OVERHEAD + len(payload))
        self.assertEqual(frames.receiverIndex(datagram), index)
        self.assertEqual(frames.decode(KEY, datagram), (index, sequence, payload))

    @FUZZ
    @given(st.binary(max_size=100))
    def test_garbageRefused(self, datagram):
        """
        Random bytes, with or without the frame's first byte, are refused
        with L{frames.FrameError}, never anything else.
        """
        reader = frames.FrameReader(KEY)
        for candidate in (datagram, b"\x08" + datagram):
            self.assertRaises(frames.FrameError, reader.read, candidate)

    @FUZZ
    @given(st.lists(st.integers(0, 300), max_size=200))
    def test_windowTakesEachOnce(self, sequences):
        """
        Whatever the order, each sequence number is taken at most once, and
        one taken is always within the window of the highest.
        """
        window = frames.ReplayWindow(64)
        taken = set()
        for sequence in sequences:
            if window.fresh(sequence):
                self.assertNotIn(sequence, taken)
                self.assertGreater(sequence, window.highest - 64)
                window.take(sequence)
                taken.add(sequence)
            else:
                self.assertTrue(sequence in taken or sequence <= window.highest - 64)
