"""
Tests for L{punchd.ratelimit}.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.ratelimit import SourceLimiter, TokenBucket


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
