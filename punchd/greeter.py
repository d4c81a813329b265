"""
The demo application on a path: the original test-client's direct
message, sent once a second, and every message from the contact logged.
"""

from collections import deque

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.messages import MAX_PAYLOAD_BYTES
from punchd.punching import UP

#: How many of the messages received a greeter keeps, for whoever embeds
#: it: a peer runs for months, at a message a second.
RECEIVED_KEPT = 100


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
        self.log.info(
            "We received a peer message of len {length} from {host},{port} ->> {text}",
            length=len(data),
            host=source[0],
            port=source[1],
            text=_printable(text),
        )
