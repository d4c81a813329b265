"""
Counting dropped datagrams, and warning about them at a rate that cannot
flood the log.
"""

from collections import Counter

from twisted.logger import Logger


class DropCounter:
    """
    Counts datagrams dropped by reason.

    The first drop is logged at once; later ones at most once every
    C{interval} seconds, each warning saying how many went unreported since
    the one before.  So a flood of bad datagrams costs one log line per
    interval.

    @ivar counts: Datagrams dropped, by reason.
    @type counts: L{collections.Counter}
    """

    log = Logger()

    def __init__(self, clock, interval: float = 10.0):
        """
        @param clock: The L{twisted.internet.interfaces.IReactorTime} to
            measure the interval by.
        @param interval: The least number of seconds between two warnings.
        """
        self.counts = Counter()
        self._clock = clock
        self._interval = interval
        self._nextWarning = float("-inf")
        self._unreported = 0

    def drop(self, reason: str, source: str, detail: str = "", outgoing: bool = False) -> None:
        """
        Count one dropped datagram.

        @param reason: A short, fixed reason, the key of L{counts}.
        @param source: Who sent it, as text; for an outgoing datagram, whom
            it was for.
        @param detail: What exactly was wrong with it.
        @param outgoing: Whether it was one of ours, dropped on the way out.
        """
        self.counts[reason] += 1
        self._unreported += 1
        now = self._clock.seconds()
        if now < self._nextWarning:
            return
        self._nextWarning = now + self._interval
        self.log.warn(
            "Dropped a datagram {direction} {source}: {reason}{detail}"
            " ({unreported} dropped since the last warning, {total} in all)",
            direction="to" if outgoing else "from",
            source=source,
            reason=reason,
            detail=f" ({detail})" if detail else "",
            unreported=self._unreported,
            total=sum(self.counts.values()),
        )
        self._unreported = 0
