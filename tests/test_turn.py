"""
L{punchd.turn.TurnClient} against a real coturn on loopback.

Without C{turnserver} (Debian package coturn) these skip, saying why;
under C{CI=true} they fail.
"""

import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from punchd import stun, turn
from tests.coturn import Coturn, requireCoturn

SECRET = "punchd test secret"


class _Socket(DatagramProtocol):
    """
    A UDP socket whose datagrams go to a L{turn.TurnClient} first, and the
    others to a list.
    """

    noisy = False

    def __init__(self):
        self.client = None
        self.other = []
        self.waiting = []

    def datagramReceived(self, datagram, address):
        if self.client is not None and self.client.handle(datagram, address):
            return
        self.other.append((datagram, address))
        waiting, self.waiting = self.waiting, []
        for d in waiting:
            d.callback(None)

    def next(self, timeout=5.0):
        d = Deferred()
        self.waiting.append(d)
        d.addTimeout(timeout, reactor)
        return d


def _received(into):
    def received(data, peer):
        waiting = into.pop("waiting", None)
        into.setdefault("data", []).append((data, peer))
        if waiting is not None:
            waiting.callback(None)

    return received


def _nextData(into, timeout=5.0):
    d = Deferred()
    into["waiting"] = d
    d.addTimeout(timeout, reactor)
    return d


class CoturnTests(TestCase):
    """
    Allocate, permissions, channels, data and errors, against coturn.
    """

    def setUp(self):
        requireCoturn(self)
        self.coturn = Coturn(secret=SECRET, extra=["--user-quota=1"]).start()
        self.addCleanup(self.coturn.stop)

    def listen(self):
        sock = _Socket()
        port = reactor.listenUDP(0, sock, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return sock, ("127.0.0.1", port.getHost().port)

    def client(self, sock, secret=SECRET, name="alice", received=None):
        username, password = turn.restCredentials(secret.encode(), name, time.time(), 600)
        client = turn.TurnClient(
            reactor,
            sock.transport.write,
            self.coturn.address,
            username,
            password,
            received=received,
        )
        sock.client = client
        self.addCleanup(client.stop)
        return client

    @inlineCallbacks
    def test_allocate(self):
        """
        With REST-API credentials from the shared secret, coturn grants a
        relayed address on its relay IP after the 401 challenge.
        """
        sock, address = self.listen()
        client = self.client(sock)
        relayed = yield client.allocate()
        self.assertEqual(relayed[0], "127.0.0.1")
        self.assertNotEqual(relayed[1], self.coturn.port)
        self.assertEqual(client.mapped, address)
        self.assertEqual(client.realm, "punchd")
        self.assertGreater(client.lifetime, 0)

    @inlineCallbacks
    def test_dataBothWays(self):
        """
        A permitted peer's datagrams to the relayed address come out of the
        client; the client's go to the peer in a Send indication first,
        then in ChannelData once bound, and come from the relayed address.
        """
        into = {}
        sock, _ = self.listen()
        client = self.client(sock, received=_received(into))
        relayed = yield client.allocate()
        peer, peerAddress = self.listen()
        yield client.permit("127.0.0.1")
        arrived = _nextData(into)
        peer.transport.write(b"from the peer", relayed)
        yield arrived
        self.assertEqual(into["data"], [(b"from the peer", peerAddress)])
        got = peer.next()
        client.sendTo(b"by indication", peerAddress)
        yield got
        self.assertEqual(peer.other[-1], (b"by indication", relayed))
        channel = yield client.bind(peerAddress)
        self.assertEqual(channel, turn.FIRST_CHANNEL)
        self.assertEqual(client.channelOf(peerAddress), channel)
        got = peer.next()
        client.sendTo(b"by channel", peerAddress)
        yield got
        self.assertEqual(peer.other[-1], (b"by channel", relayed))
        arrived = _nextData(into)
        peer.transport.write(b"on the channel", relayed)
        yield arrived
        self.assertEqual(into["data"][-1], (b"on the channel", peerAddress))

    @inlineCallbacks
    def test_unpermittedDropped(self):
        """
        A datagram to the relayed address from an IP without a permission
        never comes out of the client.
        """
        into = {}
        sock, _ = self.listen()
        client = self.client(sock, received=_received(into))
        relayed = yield client.allocate()
        peer, _ = self.listen()
        yield client.permit("127.0.0.2")
        peer.transport.write(b"not let in", relayed)
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertNotIn("data", into)

    @inlineCallbacks
    def test_wrongSecret(self):
        """
        Credentials made from another secret: the Deferred fails with a
        TurnError that says 401 and coturn's reason.
        """
        sock, _ = self.listen()
        client = self.client(sock, secret="not the secret")
        with self.assertRaises(turn.TurnError) as caught:
            yield client.allocate()
        self.assertEqual(caught.exception.code, turn.UNAUTHENTICATED)
        self.assertEqual(caught.exception.method, "Allocate")
        self.assertIn("401", str(caught.exception))

    @inlineCallbacks
    def test_expiredCredentials(self):
        """
        Credentials whose expiry has passed are refused with 401.
        """
        sock, _ = self.listen()
        username, password = turn.restCredentials(SECRET.encode(), "alice", time.time() - 60, 10)
        client = turn.TurnClient(reactor, sock.transport.write, self.coturn.address, username, password)
        sock.client = client
        self.addCleanup(client.stop)
        with self.assertRaises(turn.TurnError) as caught:
            yield client.allocate()
        self.assertEqual(caught.exception.code, turn.UNAUTHENTICATED)

    @inlineCallbacks
    def test_quota(self):
        """
        Over the per-user quota (coturn's --user-quota=1), a second
        allocation for the same name fails with 486.
        """
        first, _ = self.listen()
        yield self.client(first).allocate()
        second, _ = self.listen()
        with self.assertRaises(turn.TurnError) as caught:
            yield self.client(second).allocate()
        self.assertEqual(caught.exception.code, turn.QUOTA_REACHED)

    @inlineCallbacks
    def test_deallocate(self):
        """
        stop() deallocates: coturn grants the Refresh of lifetime 0, and a
        new allocation from the same socket, which an allocation still
        there would refuse with 437.
        """
        sock, _ = self.listen()
        client = self.client(sock)
        yield client.allocate()
        client.stop()
        yield deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(
            [(m.method, m.messageClass) for m in (stun.decode(d) for d, _ in sock.other)],
            [(turn.REFRESH, stun.SUCCESS)],
        )
        # coturn forgets a deleted allocation's 5-tuple within a second.
        yield deferLater(reactor, 1.5, lambda: None)
        relayed = yield self.client(sock).allocate()
        self.assertIsNotNone(relayed)

    @inlineCallbacks
    def test_refresh(self):
        """
        A Refresh before expiry keeps the allocation: granted, the lifetime
        is the server's answer.
        """
        sock, _ = self.listen()
        client = self.client(sock)
        yield client.allocate()
        client._refreshCall.cancel()
        client._refresh()
        yield deferLater(reactor, 0.3, lambda: None)
        self.assertIsNotNone(client.relayed)
        self.assertTrue(client._refreshCall.active())
