"""
A hostile peer for the attack suite, run as a process of its own: punchd's
own L{PeerProtocol}, registered from a real address as an attacker would,
but listing whatever local addresses it likes, asking for a new
introduction as often as it likes, ignoring its contact if it likes, and
flooding the path once it is up.

    python -m tests.hostile --server 127.0.0.1:PORT --name bob --peer alice
        [--interface 127.0.6.1] [--port N] [--local HOST:PORT ...]
        [--reintroduce SECONDS] [--deaf] [--flood SIZE,RATE]

It prints one line per event, for the test to read: C{listening PORT},
C{introduced HOST:PORT KEYHEX}, C{up HOST:PORT}, C{flooded N}.
"""

import argparse
import sys

from twisted.internet.task import LoopingCall
from twisted.python import log
from zope.interface import implementer

from punchd.addresses import splitHostPort
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.peer import PeerProtocol


def hostPort(text):
    """
    C{HOST:PORT} as C{(host, port)}, any port, 0 included, and an IPv6
    HOST in brackets: a hostile peer lists what it likes.
    """
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def say(*words):
    print(*words, flush=True)


@implementer(IPathObserver, IPathReceiver)
class Flood:
    """
    Once the path is up, write C{size} bytes C{rate} times a second to it.
    """

    def __init__(self, clock, size, rate):
        self._payload = b"x" * size
        self._call = LoopingCall(self._write)
        self._call.clock = clock
        self._rate = rate
        self._path = None
        self.written = 0

    def _write(self):
        try:
            self._path.write(self._payload)
        except RuntimeError:
            self.stop()
            return
        self.written += 1
        if self.written % 100 == 0:
            say("flooded", self.written)

    def stop(self):
        if self._call.running:
            self._call.stop()

    def pathUp(self, path):
        say("up", "%s:%d" % path.selected.address)
        self._path = path
        if self._rate and not self._call.running:
            self._call.start(1 / self._rate, now=True)

    def pathMoved(self, path, previous):
        pass

    def pathLost(self, path):
        self.stop()

    def punchFailed(self, path):
        say("failed")

    def dataReceived(self, path, data, source):
        pass


class HostilePeer(PeerProtocol):
    def __init__(self, *args, locals_=(), deaf=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._forcedLocals = tuple(locals_)
        self._deaf = deaf

    def startProtocol(self):
        say("listening", self.transport.getHost().port)
        super().startProtocol()
        if self._forcedLocals:
            self.localAddresses = self._forcedLocals
            self.registrar.localAddresses = self._forcedLocals

    def datagramReceived(self, datagram, address):
        if self._deaf and address != self.server:
            return
        super().datagramReceived(datagram, address)

    def _introduced(self, introduction):
        say("introduced", "%s:%d" % introduction.address, introduction.key.hex())
        super()._introduced(introduction)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tests.hostile")
    parser.add_argument("--server", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--interface", default="127.0.6.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--local", action="append", default=[])
    parser.add_argument("--reintroduce", type=float, default=0)
    parser.add_argument("--deaf", action="store_true")
    parser.add_argument("--flood", default="0,0")
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    log.startLogging(sys.stderr, setStdout=False)
    size, rate = (float(x) for x in args.flood.split(","))
    application = Flood(reactor, int(size), rate)
    peer = HostilePeer(
        reactor,
        splitHostPort(args.server),
        args.name,
        args.peer,
        discoverNAT=False,
        application=application,
        locals_=[hostPort(text) for text in args.local],
        deaf=args.deaf,
    )
    if args.reintroduce:
        again = LoopingCall(lambda: peer.register(seeking=peer.registrar.wants))
        again.clock = reactor
        reactor.callLater(args.reintroduce, again.start, args.reintroduce)
    reactor.listenUDP(args.port, peer, interface=args.interface)
    reactor.callLater(args.seconds, reactor.stop)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
