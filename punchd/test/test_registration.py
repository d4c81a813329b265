"""
Tests for L{punchd.registration}: when a peer registers.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd.registration import Registrar


def registrar(clock, sent, draws):
    """
    A L{Registrar} on C{clock} that appends what it sends to C{sent}, its
    jitter drawn from C{draws}.
    """
    draws = iter(draws)
    return Registrar(
        clock,
        sent.append,
        ("192.0.2.1", 3478),
        "alice",
        ("bob",),
        (),
        5000,
        lambda: ("bob",),
        interval=20.0,
        random=lambda: next(draws),
    )


class JitterTests(SynchronousTestCase):
    def test_refreshIntervalJittered(self):
        """
        Refreshes come every interval, moved by up to a tenth of it either way as the random function says.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [1.0, 0.0, 1.0, 0.0, 0.5])
        r.start()
        self.assertEqual(len(sent), 1)
        # The first refresh was scheduled with the draw 1.0: 22 s.
        pending = sorted(call.getTime() for call in clock.getDelayedCalls())
        self.assertIn(22.0, pending)
        r.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_retransmissionJittered(self):
        """
        An unanswered registration is retransmitted after the backoff delay moved by the jitter.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [0.5, 0.0, 0.5])
        r.start()
        # Refresh in 20 s; first retransmission after 0.5 s * 0.9 = 0.45 s.
        clock.advance(0.44)
        self.assertEqual(len(sent), 1)
        clock.advance(0.02)
        self.assertEqual(len(sent), 2)
        r.stop()
