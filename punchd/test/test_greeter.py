"""
Tests for L{punchd.greeter}, the demo application on a path.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from punchd.greeter import RECEIVED_KEPT, Greeter
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.punching import LOST, UP

SOURCE = ("203.0.113.7", 6000)


class FakePath:
    def __init__(self):
        self.state = UP
        self.written = []

    def write(self, data):
        self.written.append(data)


class GreeterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.greeter = Greeter(self.clock, "h\u00e9llo", messageInterval=1.0)
        self.path = FakePath()

    def test_interfaces(self):
        """
        A greeter watches a path and takes what it brings.
        """
        verifyObject(IPathObserver, self.greeter)
        verifyObject(IPathReceiver, self.greeter)

    def test_sendsOnceASecondWhileUp(self):
        """
        Once the path is up, the text goes out at once and every second, as
        UTF-8, until the path is lost.
        """
        self.greeter.pathUp(self.path)
        self.clock.pump([1, 1])
        self.assertEqual(self.path.written, ["h\u00e9llo".encode()] * 3)
        self.greeter.pathLost(self.path)
        self.clock.advance(5)
        self.assertEqual(len(self.path.written), 3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopsOnAPathNoLongerUp(self):
        """
        A path stopped or replaced without a word is not written to again.
        """
        self.greeter.pathUp(self.path)
        self.path.state = LOST
        self.clock.advance(1)
        self.assertEqual(len(self.path.written), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_receivedKeptAndBounded(self):
        """
        Messages received are kept as text, the last L{RECEIVED_KEPT} of
        them, bytes that are not UTF-8 replaced.
        """
        for i in range(RECEIVED_KEPT + 5):
            self.greeter.dataReceived(self.path, f"m{i}".encode(), SOURCE)
        self.greeter.dataReceived(self.path, b"bad \xff", SOURCE)
        self.assertEqual(len(self.greeter.received), RECEIVED_KEPT)
        self.assertEqual(self.greeter.received[-1], ("bad \ufffd", SOURCE))
        self.assertEqual(self.greeter.received[0], ("m6", SOURCE))

    def test_tooLongRefused(self):
        """
        A text that does not fit in one datagram is refused at once.
        """
        self.assertRaises(ValueError, Greeter, self.clock, "\u00e9" * (MAX_PAYLOAD_BYTES // 2 + 1))


class LogRateTests(SynchronousTestCase):
    def test_messageLinesRateLimitedAndCounted(self):
        """
        A flood of messages from the contact logs the first lines, then one a second, and counts and reports the rest.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        from punchd.greeter import LOGGED_BURST

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        greeter = Greeter(clock, "hi")
        path = FakePath()
        for i in range(1000):
            greeter.dataReceived(path, b"x" * 1000, SOURCE)
        self.assertEqual(greeter.unlogged, 1000 - LOGGED_BURST)
        clock.advance(1)
        greeter.dataReceived(path, b"y", SOURCE)
        lines = [e for e in events if e["log_format"].startswith("We received a peer message")]
        skipped = [e for e in events if "not logged" in e["log_format"]]
        self.assertEqual(len(lines), LOGGED_BURST + 1)
        self.assertEqual([e["unlogged"] for e in skipped], [1000 - LOGGED_BURST])
        self.assertEqual(greeter.unlogged, 0)
        self.assertEqual(len(greeter.received), RECEIVED_KEPT)
