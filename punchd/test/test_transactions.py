"""
Tests for L{punchd.transactions}.
"""

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd.transactions import Transactions, TransactionTimeout, backoff

ADDRESS = ("192.0.2.1", 3478)


class TransactionsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.transactions = Transactions(
            self.clock, lambda datagram, address: self.sent.append((self.clock.seconds(), datagram, address))
        )

    def test_retransmitsOnSchedule(self):
        """
        A request is sent at once and after each delay but the last.
        """
        self.transactions.request(b"t", b"ask", ADDRESS, (0.5, 1.0, 2.0, 4.0)).addErrback(lambda f: None)
        self.clock.pump([0.25] * 40)
        self.assertEqual([t for t, _, _ in self.sent], [0, 0.5, 1.5, 3.5])
        self.assertEqual({(d, a) for _, d, a in self.sent}, {(b"ask", ADDRESS)})

    def test_timesOutAfterLastDelay(self):
        """
        With no answer, the Deferred fails with L{TransactionTimeout} once
        the last delay has passed, and no timer remains.
        """
        d = self.transactions.request(b"t", b"ask", ADDRESS, (0.5, 1.0))
        self.clock.pump([0.5, 0.75])
        self.assertNoResult(d)
        self.clock.advance(0.25)
        failure = self.failureResultOf(d, TransactionTimeout)
        self.assertEqual((failure.value.key, failure.value.attempts), (b"t", 2))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertNotIn(b"t", self.transactions)

    def test_answerFiresAndStops(self):
        """
        An answer fires the Deferred with it, and nothing more is sent.
        """
        d = self.transactions.request(b"t", b"ask", ADDRESS, (0.5, 1.0))
        self.assertTrue(self.transactions.answer(b"t", "the answer"))
        self.assertEqual(self.successResultOf(d), "the answer")
        self.clock.advance(10)
        self.assertEqual(len(self.sent), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unknownAnswer(self):
        """
        An answer to no request in flight is refused.
        """
        self.assertFalse(self.transactions.answer(b"nope", "x"))

    def test_sameKeyReplaces(self):
        """
        A new request under a key in flight withdraws the old one.
        """
        first = self.transactions.request(b"t", b"one", ADDRESS, backoff(1, 1))
        second = self.transactions.request(b"t", b"two", ADDRESS, backoff(1, 1))
        self.failureResultOf(first, CancelledError)
        self.clock.advance(1)
        self.assertEqual([d for _, d, _ in self.sent], [b"one", b"two", b"two"])
        self.transactions.answer(b"t", 2)
        self.assertEqual(self.successResultOf(second), 2)

    def test_cancelWithdraws(self):
        """
        Cancelling the Deferred withdraws the request: no timer remains.
        """
        d = self.transactions.request(b"t", b"ask", ADDRESS, (1, 1))
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.transactions.answer(b"t"))

    def test_withdrawAll(self):
        """
        L{Transactions.withdrawAll} leaves nothing in flight and no timer.
        """
        ds = [self.transactions.request(k, b"x", ADDRESS, backoff(1, 8)) for k in (1, 2, 3)]
        self.transactions.withdrawAll()
        for d in ds:
            self.failureResultOf(d, CancelledError)
        self.assertEqual((len(self.transactions), self.clock.getDelayedCalls()), (0, []))

    def test_limitWithdrawsOldest(self):
        """
        Past the limit, a new request withdraws the oldest.
        """
        transactions = Transactions(self.clock, lambda *a: None, limit=2)
        first, second, third = (transactions.request(k, b"x", ADDRESS, (1,)) for k in (1, 2, 3))
        self.failureResultOf(first, CancelledError)
        self.assertNoResult(second)
        self.assertEqual((1 in transactions, 2 in transactions, 3 in transactions), (False, True, True))
        self.assertEqual(transactions.addressOf(3), ADDRESS)

    def test_sentCounts(self):
        """
        The C{sent} callback gets each attempt's number.
        """
        attempts = []
        self.transactions.request(b"t", b"x", ADDRESS, backoff(0.5, 2), sent=attempts.append)
        self.clock.pump([0.5, 1, 2, 2])
        self.assertEqual(attempts, [1, 2, 3, 4, 5])

    def test_emptySchedule(self):
        """
        A schedule with no delay is refused.
        """
        self.assertRaises(ValueError, self.transactions.request, b"t", b"x", ADDRESS, ())


class BackoffTests(SynchronousTestCase):
    def test_doublesUpToCap(self):
        """
        L{backoff} doubles from its first delay and stays at its cap.
        """
        schedule = backoff(0.5, 3)
        self.assertEqual([next(schedule) for _ in range(6)], [0.5, 1, 2, 3, 3, 3])

    def test_jitterMovesEachDelay(self):
        """
        L{backoff} with a jitter moves each delay by up to that share of it, either way, as its random function says.
        """
        draws = iter([0.0, 0.5, 1.0, 0.75])
        schedule = backoff(1, 4, 0.1, lambda: next(draws))
        self.assertEqual(
            [round(next(schedule), 6) for _ in range(4)], [0.9, 2.0, 4.4, 4.2]
        )


class ExpectTests(SynchronousTestCase):
    def test_expectSendsNothing(self):
        """
        L{Transactions.expect} waits for an answer without sending, and
        times out after its one delay.
        """
        clock = Clock()
        sent = []
        transactions = Transactions(clock, lambda *a: sent.append(a))
        answered = transactions.expect(b"a", ADDRESS, 2)
        transactions.answer(b"a", "yes")
        self.assertEqual(self.successResultOf(answered), "yes")
        silent = transactions.expect(b"b", ADDRESS, 2)
        clock.advance(2)
        self.failureResultOf(silent, TransactionTimeout)
        self.assertEqual(sent, [])
