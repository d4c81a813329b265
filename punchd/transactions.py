"""
Requests in flight: one table, each with a retransmission schedule, a
timeout and a Deferred.

Everything punchd asks over UDP and must hear an answer to (a registration,
an introduction, a NAT probe's Binding request, an original client's
look-up) goes through a L{Transactions}, in the manner of
L{twisted.names.dns.DNSMixin}'s query table: the caller sends nothing
itself, and matches nothing itself; it hands over the datagram and a
schedule, and gets a L{Deferred} that fires with the answer or fails with
L{TransactionTimeout}.
"""

import random
from itertools import count

from twisted.internet.defer import Deferred


class TransactionTimeout(Exception):
    """
    No answer came before the schedule ran out.

    @ivar key: The transaction's key.
    @ivar attempts: How many times the request was sent.
    """

    def __init__(self, key, attempts: int):
        super().__init__(f"no answer after {attempts} transmission(s)")
        self.key = key
        self.attempts = attempts


def backoff(first: float, cap: float, jitter: float = 0.0, random=random.random):
    """
    A schedule that never runs out: C{first} seconds, then twice as long
    each time, up to C{cap}; each delay then moved at random by up to
    C{jitter} of itself either way, so that many senders started together
    do not retransmit together.

    @param random: A function returning a float in [0, 1).
    """
    for attempt in count():
        delay = min(first * 2**attempt, cap)
        yield delay * (1 + jitter * (2 * random() - 1)) if jitter else delay


class _Transaction:
    __slots__ = ("key", "datagram", "address", "schedule", "deferred", "call", "attempts", "sent")

    def __init__(self, key, datagram, address, schedule, deferred, sent):
        self.key = key
        self.datagram = datagram
        self.address = address
        self.schedule = schedule
        self.deferred = deferred
        self.call = None
        self.attempts = 0
        self.sent = sent


class Transactions:
    """
    The requests one sender has in flight, by key (a STUN transaction ID, or
    anything hashable that names what the answer will match).

    A request is sent at once, and again after each delay of its schedule
    but the last; when the last delay passes with no answer, its Deferred
    fails with L{TransactionTimeout}.  So C{(0.5, 1, 2, 4)} sends at 0,
    0.5, 1.5 and 3.5 seconds and gives up at 7.5; C{(4,)} sends once and
    waits four seconds.  Cancelling the Deferred withdraws the request.

    @ivar limit: The most requests in flight; a new one past it withdraws
        the oldest, whose Deferred fails with L{twisted.internet.defer.CancelledError}.
    """

    def __init__(self, clock, send, limit: "int | None" = None):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends.
        @param limit: The most requests in flight, or L{None} for no limit.
        """
        self.clock = clock
        self._send = send
        self.limit = limit
        self._inFlight = {}

    def __len__(self) -> int:
        return len(self._inFlight)

    def __contains__(self, key) -> bool:
        return key in self._inFlight

    def addressOf(self, key):
        """
        The address the request C{key} went to, or L{None} if there is no
        such request in flight.
        """
        transaction = self._inFlight.get(key)
        return None if transaction is None else transaction.address

    def request(self, key, datagram: bytes, address, schedule, sent=None) -> Deferred:
        """
        Send a request, and again on the schedule until it is answered.

        A request already in flight under C{key} is withdrawn first.

        @param key: What L{answer} will be called with.
        @param datagram: The request.
        @param address: Where to: C{(host, port)}.
        @param schedule: An iterable of delays in seconds (see the class).
        @param sent: A function called with the number of the attempt
            (1 for the first) right after each transmission, or L{None}.
        @return: A L{Deferred} that fires with what L{answer} is given, or
            fails with L{TransactionTimeout}.
        """
        self.withdraw(key)
        if self.limit is not None:
            while len(self._inFlight) >= self.limit:
                self.withdraw(next(iter(self._inFlight)))
        delays = iter(schedule)
        first = next(delays, None)
        if first is None:
            raise ValueError("a schedule needs at least one delay")
        d = Deferred(lambda _: self._forget(key))
        transaction = _Transaction(key, datagram, address, delays, d, sent)
        self._inFlight[key] = transaction
        self._transmit(transaction)
        if self._inFlight.get(key) is transaction:
            transaction.call = self.clock.callLater(first, self._expired, transaction)
        return d

    def expect(self, key, address, timeout: float) -> Deferred:
        """
        Wait for the answer to a request sent otherwise, once, without
        retransmitting it.

        @param timeout: Seconds to wait.
        @return: As for L{request}.
        """
        return self.request(key, None, address, (timeout,))

    def _expired(self, transaction):
        # The last delay of a schedule is the wait for an answer to the
        # last transmission.
        delay = next(transaction.schedule, None)
        if delay is None:
            self._forget(transaction.key)
            transaction.deferred.errback(TransactionTimeout(transaction.key, transaction.attempts))
            return
        self._transmit(transaction)
        transaction.call = self.clock.callLater(delay, self._expired, transaction)

    def _transmit(self, transaction):
        if transaction.datagram is None:
            return
        self._send(transaction.datagram, transaction.address)
        transaction.attempts += 1
        if transaction.sent is not None:
            transaction.sent(transaction.attempts)

    def answer(self, key, result=None) -> bool:
        """
        Take the answer to the request C{key}: its Deferred fires with
        C{result}, and no retransmission of it remains.

        @return: Whether such a request was in flight.
        """
        transaction = self._forget(key)
        if transaction is None:
            return False
        transaction.deferred.callback(result)
        return True

    def withdraw(self, key) -> bool:
        """
        Withdraw the request C{key}, if it is in flight: its Deferred fails
        with L{twisted.internet.defer.CancelledError}.

        @return: Whether it was in flight.
        """
        transaction = self._inFlight.get(key)
        if transaction is None:
            return False
        transaction.deferred.cancel()
        return True

    def withdrawAll(self):
        """
        Withdraw every request: no timer remains.
        """
        for key in list(self._inFlight):
            self.withdraw(key)

    def _forget(self, key):
        transaction = self._inFlight.pop(key, None)
        if transaction is not None and transaction.call is not None and transaction.call.active():
            transaction.call.cancel()
        return transaction

