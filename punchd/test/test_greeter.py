"""
Tests for L{punchd.greeter}, the demo application on a path.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from punchd.greeter import RECEIVED_KEPT, Greeter
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.messages import MAX_PAYLOAD_BYTES
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
