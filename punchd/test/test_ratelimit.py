"""
Tests for L{punchd.ratelimit}.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.ratelimit import SourceLimiter, TokenBucket
from punchd.test.optional import given, settings, st


class TokenBucketTests(SynchronousTestCase):
    """
    Tests for L{TokenBucket}.
    """

    def test_startsFull(self):
        """
        A new bucket lets its whole burst through at once, and no more.
        """
        bucket = TokenBucket(rate=1, burst=3, now=0)
        self.assertEqual([bucket.take(1, 0) for _ in range(4)], [True, True, True, False])

    def test_refills(self):
        """
        Tokens come back at the rate, up to the burst.
        """
        bucket = TokenBucket(rate=2, burst=3, now=0)
        self.assertTrue(bucket.take(3, 0))
        self.assertFalse(bucket.take(2, 0.5))
        self.assertTrue(bucket.take(2, 1))
        self.assertEqual(bucket.tokens(100), 3)

    def test_refusedTakesNothing(self):
        """
        A refused take leaves the tokens as they were.
        """
        bucket = TokenBucket(rate=1, burst=4, now=0)
        self.assertFalse(bucket.take(5, 0))
        self.assertTrue(bucket.take(4, 0))

    def test_takeWithBoth(self):
        """
        L{TokenBucket.takeWith} takes from both buckets when both hold
        enough.
        """
        one, other = TokenBucket(1, 3, now=0), TokenBucket(1, 5, now=0)
        self.assertTrue(one.takeWith(other, 2, 0))
        self.assertEqual((one.tokens(0), other.tokens(0)), (1, 3))

    def test_takeWithWholeOrNothing(self):
        """
        L{TokenBucket.takeWith} takes from neither bucket when either is
        short, whichever it is.
        """
        for first, second in ((1, 5), (5, 1)):
            one, other = TokenBucket(1, first, now=0), TokenBucket(1, second, now=0)
            self.assertFalse(one.takeWith(other, 2, 0))
            self.assertEqual((one.tokens(0), other.tokens(0)), (first, second))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(st.sampled_from([0.5, 1, 2]), st.floats(0, 2)), max_size=40
        )
    )
    def test_takeWithIsTakeOnBoth(self, steps):
        """
        L{TokenBucket.takeWith} answers as L{TokenBucket.take} on each
        bucket would, taking only when both can.
        """
        fast = TokenBucket(3, 5, 0), TokenBucket(7, 4, 0)
        plain = TokenBucket(3, 5, 0), TokenBucket(7, 4, 0)
        now = 0.0
        for cost, later in steps:
            now += later
            both = plain[0].tokens(now) >= cost and plain[1].tokens(now) >= cost
            if both:
                plain[0].take(cost, now)
                plain[1].take(cost, now)
            self.assertEqual(fast[0].takeWith(fast[1], cost, now), both)
            self.assertEqual(
                (fast[0].tokens(now), fast[1].tokens(now)),
                (plain[0].tokens(now), plain[1].tokens(now)),
            )

    def test_badSettings(self):
        """
        A rate or burst that is not positive is refused.
        """
        self.assertRaises(ValueError, TokenBucket, 0, 1, 0)
        self.assertRaises(ValueError, TokenBucket, 1, -1, 0)


class SourceLimiterTests(SynchronousTestCase):
    """
    Tests for L{SourceLimiter}.
    """

    def test_perSource(self):
        """
        Each source has a bucket of its own.
        """
        limiter = SourceLimiter(rate=1, burst=2, totalRate=100, totalBurst=100)
        self.assertTrue(limiter.take("a", 2, 0))
        self.assertFalse(limiter.take("a", 1, 0))
        self.assertTrue(limiter.take("b", 2, 0))
        self.assertEqual(limiter.dropped, 1)

    def test_total(self):
        """
        All sources together are held to the total, however many there are.
        """
        limiter = SourceLimiter(rate=1, burst=2, totalRate=1, totalBurst=5)
        allowed = [limiter.take(str(i), 1, 0) for i in range(10)]
        self.assertEqual(allowed.count(True), 5)

    def test_boundedMemory(self):
        """
        At most C{maxSources} buckets are kept, the least recently used
        forgotten first.
        """
        limiter = SourceLimiter(1, 1, 1000, 1000, maxSources=3)
        for source in "abcd":
            limiter.take(source, 1, 0)
        self.assertEqual(len(limiter), 3)
        # "a" was forgotten: it has a full bucket again.
        self.assertTrue(limiter.take("a", 1, 0))
        self.assertFalse(limiter.take("d", 1, 0))
        used = SourceLimiter(1, 1, 1000, 1000, maxSources=3)
        for source in "abcad":
            used.take(source, 1, 0)
        # "a", used again after "b", is kept; "b" was forgotten.
        self.assertFalse(used.take("a", 1, 0))
        self.assertTrue(used.take("b", 1, 0))


class PlainSourceLimiter(SourceLimiter):
    """
    L{SourceLimiter.take} as first written, through L{TokenBucket}'s own
    methods.
    """

    def take(self, source, cost, now):
        if self._total is None:
            self._total = TokenBucket(self._totalRate, self._totalBurst, now)
        bucket = self._buckets.get(source)
        if bucket is None:
            bucket = self._buckets[source] = TokenBucket(self._rate, self._burst, now)
            while len(self._buckets) > self._maxSources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        if bucket.tokens(now) < cost or self._total.tokens(now) < cost:
            self.dropped += 1
            return False
        bucket.take(cost, now)
        self._total.take(cost, now)
        return True


class SourceLimiterEquivalenceTests(SynchronousTestCase):
    """
    L{SourceLimiter.take} works out each bucket's level once, with the
    answers of the plain definition.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["a", "b", "c", "d"]),
                st.sampled_from([0.5, 1, 2]),
                st.floats(0, 2),
            ),
            max_size=60,
        )
    )
    def test_sameAnswers(self, steps):
        """
        The same takes at the same times get the same answers.
        """
        fast = SourceLimiter(3, 5, 7, 9, maxSources=3)
        plain = PlainSourceLimiter(3, 5, 7, 9, maxSources=3)
        now = 0.0
        for source, cost, later in steps:
            now += later
            self.assertEqual(fast.take(source, cost, now), plain.take(source, cost, now))
        self.assertEqual(fast.dropped, plain.dropped)
