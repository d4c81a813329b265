"""
Tests for L{punchd.sideports}: the extra sockets of a many-port punch, on
the real reactor and loopback.
"""

from twisted.internet import defer, reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from punchd.sideports import quietListenUDP
from punchd.testing import Network


class Echo(DatagramProtocol):
    noisy = False

    def __init__(self):
        self.received = defer.Deferred()

    def datagramReceived(self, datagram, address):
        if not self.received.called:
            self.received.callback(datagram)


class QuietPortTests(TestCase):
    def portLines(self, events):
        texts = map(formatEvent, events)
        return [t for t in texts if "starting on" in t or "Closed)" in t]

    @defer.inlineCallbacks
    def test_manySocketsNoLines(self):
        """
        256 sockets open, carry a datagram each way and close without a
        log line, where the reactor's own ports log two each.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        listen = quietListenUDP(reactor)
        protocols = [Echo() for _ in range(256)]
        ports = [listen(0, p, interface="127.0.0.1") for p in protocols]
        self.assertEqual(len({p.getHost().port for p in ports}), 256)
        ports[0].write(b"hello", ("127.0.0.1", ports[255].getHost().port))
        self.assertEqual((yield protocols[255].received), b"hello")
        yield defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
        self.assertEqual(self.portLines(events), [])
        loud = reactor.listenUDP(0, Echo(), interface="127.0.0.1")
        yield defer.maybeDeferred(loud.stopListening)
        self.assertEqual(len(self.portLines(events)), 2)

    def test_otherReactors(self):
        """
        A reactor that is not a POSIX one gets its own C{listenUDP}; one
        without UDP, none.
        """
        host = Network().host("10.0.0.1")
        self.assertEqual(quietListenUDP(host), host.listenUDP)
        self.assertIsNone(quietListenUDP(object()))
