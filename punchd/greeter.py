"""
The demo application on a path: the original test-client's direct
message, sent once a second, and every message from the contact logged.
"""

from collections import deque

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.punching import UP
from punchd.ratelimit import TokenBucket

#: How many of the messages received a greeter keeps, for whoever embeds
#: it: a peer runs for months, at a message a second.
RECEIVED_KEPT = 100

#: Messages from the contact logged a second, after a first burst of
#: L{LOGGED_BURST}: the contact, or whoever took its place, sets the pace
#: of its messages but not of the log.  The others are counted.
LOGGED_RATE = 1
LOGGED_BURST = 10


def defaultMessage(name: str, wants: str) -> str:
    """
    The direct message the original test client sends.
    """
    return f"This is a direct P2P message from {name} to {wants}"


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)


@implementer(IPathObserver, IPathReceiver)
class Greeter:
    """
    Send a text to the contact once a second while the path is up, and log
    what comes back.

    @ivar text: The message sent.
    @ivar received: The last L{RECEIVED_KEPT} messages received, as
        C{(text, source)}.
    @ivar unlogged: How many messages received since the last one logged
        were not logged, past L{LOGGED_RATE}.
    """

    log = Logger()

    def __init__(self, clock, text: str, messageInterval: float = 1.0):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param text: The message to send.
        @param messageInterval: Seconds between two messages.
        @raise ValueError: If C{text} does not fit in one datagram.
        """
        self._payload = text.encode("utf-8")
        if len(self._payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"the message is {len(self._payload)} bytes of UTF-8;"
                f" at most {MAX_PAYLOAD_BYTES} fit in a datagram"
            )
        self.text = text
        self.received = deque(maxlen=RECEIVED_KEPT)
        self._interval = messageInterval
        self._path = None
        self._sender = LoopingCall(self._send)
        self._sender.clock = clock
        self._clock = clock
        self._logBudget = TokenBucket(LOGGED_RATE, LOGGED_BURST, clock.seconds())
        self.unlogged = 0

    def _send(self):
        if self._path.state != UP:
            # Replaced or stopped without a word: a new path will say so.
            self.stop()
            return
        self._path.write(self._payload)

    def stop(self):
        """
        Stop sending: no timer of the greeter remains.
        """
        if self._sender.running:
            self._sender.stop()
        self._path = None

    def pathUp(self, path):
        self.stop()
        self._path = path
        self._sender.start(self._interval, now=True)

    def pathMoved(self, path, previous):
        pass

    def pathLost(self, path):
        if path is self._path:
            self.stop()

    def punchFailed(self, path):
        if path is self._path:
            self.stop()

    def dataReceived(self, path, data, source):
        text = data.decode("utf-8", "replace")
        self.received.append((text, source))
        if not self._logBudget.take(1, self._clock.seconds()):
            # Whoever holds the path sets the pace: the log does not.
            self.unlogged += 1
            return
        if self.unlogged:
            self.log.info(
                "{unlogged} peer message(s) not logged: more than {rate} a second",
                unlogged=self.unlogged,
                rate=LOGGED_RATE,
            )
            self.unlogged = 0
        self.log.info(
            "We received a peer message of len {length} from {host},{port} ->> {text}",
            length=len(data),
            host=source[0],
            port=source[1],
            text=_printable(text),
        )
