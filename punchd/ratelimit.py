"""
Token buckets: how much a server may send, to one address and in all.

Pure logic: no I/O, and time is passed in by the caller.
"""

from collections import OrderedDict


class TokenBucket:
    """
    A bucket of up to C{burst} tokens that fills at C{rate} tokens a second.

    @ivar rate: Tokens added per second.
    @ivar burst: The most tokens the bucket holds; it starts full.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp")

    def __init__(self, rate: float, burst: float, now: float):
        if rate <= 0 or burst <= 0:
            raise ValueError(f"rate and burst must be positive, not {rate!r} and {burst!r}")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def tokens(self, now: float) -> float:
        """
        @return: How many tokens the bucket holds at C{now}.
        """
        return min(self.burst, self._tokens + (now - self._stamp) * self.rate)

    def take(self, cost: float, now: float) -> bool:
        """
        Take C{cost} tokens if the bucket holds that many.

        @return: Whether it did; if not, it took none.
        """
        tokens = self.tokens(now)
        self._stamp = now
        if tokens < cost:
            self._tokens = tokens
            return False
        self._tokens = tokens - cost
        return True

    def takeWith(self, other: "TokenBucket", cost: float, now: float) -> bool:
        """
        Take C{cost} tokens from this bucket and from C{other}, if both
        hold that many: L{take} on the two at once, whole or not at all.

        @return: Whether it did; if not, it took from neither.
        """
        # Each bucket's level worked out once, without min(), and the other's
        # not at all when this one is short, as a flooding source's is: this
        # runs for every datagram the stage manager limits.
        tokens = self._tokens + (now - self._stamp) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        if tokens < cost:
            return False
        otherTokens = other._tokens + (now - other._stamp) * other.rate
        if otherTokens > other.burst:
            otherTokens = other.burst
        if otherTokens < cost:
            return False
        self._tokens = tokens - cost
        self._stamp = now
        other._tokens = otherTokens - cost
        other._stamp = now
        return True


class SourceLimiter:
    """
    A token bucket for each source, and one for all of them together.

    Memory is bounded: it keeps the buckets of at most C{maxSources} sources,
    forgetting the least recently used.  A forgotten source starts again
    with a full bucket, so the bucket for all sources is what bounds the
    total whatever the number of sources.

    @ivar dropped: How many times L{take} refused.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        totalRate: float,
        totalBurst: float,
        maxSources: int = 10000,
    ):
        """
        @param rate: Tokens a second for each source.
        @param burst: The most tokens each source may spend at once.
        @param totalRate: Tokens a second for all sources together.
        @param totalBurst: The most tokens all sources together may spend
            at once.
        @param maxSources: How many sources' buckets to keep.
        """
        if maxSources < 1:
            raise ValueError(f"maxSources must be at least 1, not {maxSources}")
        self._rate = rate
        self._burst = burst
        self._maxSources = maxSources
        self._total = None
        self._totalRate = totalRate
        self._totalBurst = totalBurst
        self._buckets = OrderedDict()
        self.dropped = 0

    def __len__(self) -> int:
        """
        @return: How many sources' buckets are kept.
        """
        return len(self._buckets)

    def take(self, source, cost: float, now: float) -> bool:
        """
        Take C{cost} tokens from the bucket of C{source} and from the total,
        if both hold that many.

        @return: Whether it did; if not, it took none.
        """
        total = self._total
        if total is None:
            total = self._total = TokenBucket(self._totalRate, self._totalBurst, now)
        buckets = self._buckets
        bucket = buckets.get(source)
        if bucket is None:
            bucket = buckets[source] = TokenBucket(self._rate, self._burst, now)
            while len(buckets) > self._maxSources:
                buckets.popitem(last=False)
        else:
            buckets.move_to_end(source)
        if bucket.takeWith(total, cost, now):
            return True
        self.dropped += 1
        return False

    def takeTotal(self, cost: float, now: float) -> bool:
        """
        Take C{cost} tokens from the total alone, for traffic that is not
        charged to any one source: that from sources not proven, whose
        addresses anyone may spoof.

        @return: Whether it did; if not, it took none.
        """
        total = self._total
        if total is None:
            total = self._total = TokenBucket(self._totalRate, self._totalBurst, now)
        if total.take(cost, now):
            return True
        self.dropped += 1
        return False
