"""
A program of its own on a punchd path: two peers behind NATs ping each
other over a direct UDP path, with an ordinary Twisted DatagramProtocol.

Start a stage manager where both can reach it, then each peer::

    twistd -n punch-server --port 8080
    python docs/example.py --server 192.0.2.10:8080 --name alice --peer bob
    python docs/example.py --server 192.0.2.10:8080 --name bob --peer alice

Each prints the path when it is up, then each answer to its pings, and
stops two seconds after the third.
"""

import argparse

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from punchd.addresses import resolve, splitHostPort
from punchd.api import connect


class Ping(DatagramProtocol):
    """
    Send a ping a second to the contact; answer its pings; count its
    answers.

    @ivar done: A Deferred that fires once C{count} answers came.
    """

    def __init__(self, clock, count=3):
        self.clock = clock
        self.count = count
        self.answers = []
        self.done = defer.Deferred()
        self._sent = 0
        self._pinger = task.LoopingCall(self._ping)
        self._pinger.clock = clock

    def startProtocol(self):
        # Called when the path first comes up: the transport is the path.
        self._pinger.start(1.0)

    def stopProtocol(self):
        if self._pinger.running:
            self._pinger.stop()

    def _ping(self):
        self._sent += 1
        self.transport.write(b"ping %d" % self._sent)

    def datagramReceived(self, data, address):
        if data.startswith(b"ping "):
            # An ordinary UDP reply, to the address it came from.
            self.transport.write(b"pong " + data[5:], address)
        elif data.startswith(b"pong ") and not self.done.called:
            self.answers.append(data)
            if len(self.answers) == self.count:
                self.done.callback(self.answers)


async def main(reactor, server, name, peer, report=print, **options):
    """
    Ping C{peer} over a direct path until three answers came, then stop
    two seconds later.

    @param server: The stage manager's C{(address, port)}.
    @param report: Where the lines to show go.
    @param options: More keyword arguments of L{punchd.api.connect}.
    """
    ping = Ping(reactor)
    path = await connect(reactor, server, name, peer, ping, **options)
    report(f"Path to {peer} up: {path.kind}, round trip {path.rtt * 1000:.1f} ms")
    for answer in await ping.done:
        report(f"{peer} answered: {answer.decode()}")
    # Answer the contact's pings a little longer: it may be a ping behind.
    await task.deferLater(reactor, 2, lambda: None)
    await ping.transport.stopListening()


def run():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="the stage manager, HOST:PORT")
    parser.add_argument("--name", required=True)
    parser.add_argument("--peer", required=True)
    arguments = parser.parse_args()
    server = resolve(*splitHostPort(arguments.server))
    task.react(
        lambda reactor: defer.ensureDeferred(
            main(reactor, server, arguments.name, arguments.peer)
        )
    )


if __name__ == "__main__":
    run()
