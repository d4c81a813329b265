"""
Cross-server introduction latency: what it adds to an introduction that
the peer to introduce is held by another stage manager.

    python -m bench.crossintro [--runs N]

One C{redis-server} of its own (unix socket, no persistence); two stage
managers (L{StageManagerProtocol} on real UDP ports of 127.0.0.1, each with
its own L{RedisStore} connections, phonebook and relay), and peers that are
plain UDP sockets, all in this process's reactor.  In each run a new alice
registers with stage manager one; then a new bob, with a cookie already,
sends his registration seeking alice: to stage manager one (local) or to
stage manager two (cross-server, so that alice's introduction is published
to one and sent from there).  The figure is the time from bob's
registration sent to alice's introduction received, median and 90th
percentile of the runs, local and cross-server taken in turn.
"""

import argparse
import statistics
import time

from twisted.internet import defer, task
from twisted.internet.protocol import DatagramProtocol

from punchd import messages, stun


class Peer(DatagramProtocol):
    """
    A peer reduced to a socket: it registers, and says when an
    introduction comes.
    """

    noisy = False

    def __init__(self, name, wants):
        self.name = name
        self.wants = wants
        self.cookie = None
        self.secret = None
        self._waiting = {}
        self.introduced = defer.Deferred()

    def datagramReceived(self, datagram, address):
        message = stun.decode(datagram)
        if (message.method, message.messageClass) == (messages.INTRODUCE, stun.REQUEST):
            if not self.introduced.called:
                self.introduced.callback(time.perf_counter())
            return
        d = self._waiting.pop(message.transactionID, None)
        if d is not None:
            d.callback(message)

    def ask(self, server, seeking=()):
        txid = stun.newTransactionID()
        d = self._waiting[txid] = defer.Deferred()
        self.transport.write(
            messages.encodeRegistration(
                txid,
                messages.Registration(self.name, (self.wants,), (), seeking, self.cookie),
                messages.UNPROVEN_REGISTRATION_BYTES,
                None if self.secret is None else messages.registrationKey(self.secret),
            ),
            server,
        )
        return d

    @defer.inlineCallbacks
    def challenge(self, server):
        answer = yield self.ask(server)
        self.cookie = answer.get(messages.COOKIE)

    @defer.inlineCallbacks
    def register(self, server, seeking=()):
        yield self.challenge(server)
        answer = yield self.ask(server, seeking)
        registered = messages.parseRegistered(answer)
        self.cookie, self.secret = registered.cookie, registered.secret


def stageManager(reactor, url, holder):
    from punchd.cookies import Cookies
    from punchd.redisbook import RedisPhonebook
    from punchd.redisstore import RedisStore, parseURL, shareKeys
    from punchd.relay import IntroductionRelay
    from punchd.server import StageManagerProtocol

    store = RedisStore(parseURL(url), reactor)
    cookies = Cookies(reactor)
    protocol = StageManagerProtocol(
        reactor,
        RedisPhonebook(store, 100000, 60.0, holder),
        cookies=cookies,
        relay=IntroductionRelay(store, holder),
        registrationLimit=None,
        bindingLimit=None,
    )
    shareKeys(store, {b"cookies": cookies.useKey, b"names": protocol.useNameKey})
    port = reactor.listenUDP(0, protocol, interface="127.0.0.1")
    store.startService()
    return store, port, ("127.0.0.1", port.getHost().port)


@defer.inlineCallbacks
def measure(reactor, url, runs):
    stores, ports, servers = [], [], []
    for holder in ("one", "two"):
        store, port, address = stageManager(reactor, url, holder)
        stores.append(store)
        ports.append(port)
        servers.append(address)
    for store in stores:
        yield store.whenAvailable()
    # The subscribers connect and subscribe on connections of their own.
    yield task.deferLater(reactor, 0.5, lambda: None)
    figures = {"local": [], "cross-server": []}
    try:
        for run in range(2 * runs + 2):
            kind = "local" if run % 2 == 0 else "cross-server"
            alice, bob = Peer(f"a{run}", f"b{run}"), Peer(f"b{run}", f"a{run}")
            sockets = [reactor.listenUDP(0, p, interface="127.0.0.1") for p in (alice, bob)]
            yield alice.register(servers[0])
            target = servers[0] if kind == "local" else servers[1]
            yield bob.challenge(target)
            start = time.perf_counter()
            bob.ask(target, (bob.wants,))
            received = yield alice.introduced
            if run >= 2:  # the first of each is a warm-up
                figures[kind].append(received - start)
            for s in sockets:
                yield s.stopListening()
        figures["relayed"] = stores[0].stats["relayedIn"]
        figures["unheard"] = stores[1].stats["relayedUnheard"]
    finally:
        for port in ports:
            yield port.stopListening()
        for store in stores:
            yield store.stopService()
    return figures


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(runs=100):
    """
    @return: A L{dict} of the median and 90th percentile, in milliseconds,
        local and cross-server, and the median's difference.
    """
    from twisted.internet import reactor

    from bench.inprocess import quietLogging
    from punchd.test.redisserver import RedisServer

    quietLogging()
    server = RedisServer(unix=True).start()
    result = {}

    def done(figures):
        result["relayed"] = figures.pop("relayed")
        result["unheard"] = figures.pop("unheard")
        for kind, seconds in figures.items():
            result[kind] = {
                "medianMs": 1000 * statistics.median(seconds),
                "p90Ms": 1000 * percentile(seconds, 0.9),
                "runs": len(seconds),
            }
        result["addedMs"] = result["cross-server"]["medianMs"] - result["local"]["medianMs"]

    def failed(failure):
        result["error"] = failure.getTraceback()

    d = measure(reactor, server.url, runs)
    d.addCallbacks(done, failed).addBoth(lambda _: reactor.stop())
    try:
        reactor.run()
    finally:
        server.cleanup()
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.crossintro")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    result = run(args.runs)
    for kind in ("local", "cross-server"):
        f = result[kind]
        print(
            f"{kind:<13} registration to introduction: median {f['medianMs']:.2f} ms,"
            f" 90th percentile {f['p90Ms']:.2f} ms ({f['runs']} runs)"
        )
    print(
        f"introductions relayed to stage manager one: {result['relayed']};"
        f" sent by two for want of a listener: {result['unheard']}"
    )
    print(f"a cross-server introduction adds {result['addedMs']:.2f} ms (goal at most 2 ms)")
    return result


if __name__ == "__main__":
    main()
