"""
Which Redis client for the shared phonebook: txredisapi (Twisted-native) or
redis-py's asyncio client under Twisted's asyncio reactor, measured on the
refresh path.

    python -m bench.redisclient [--count N] [--window W]

Three clients: txredisapi through its connection pool
(C{UnixConnection}), txredisapi's protocol alone (as
L{punchd.redisstore} uses it), and redis-py's asyncio client.  Each runs
in a child process of its own against one C{redis-server}
on a unix socket, and makes C{count} refreshes: the phonebook's register
script (L{punchd.redisbook.REGISTER}, by C{EVALSHA}) of names drawn
from 10 000 already registered, and, apart, a plain C{GET} and
C{SET ... PX} round trip.  C{window} requests are outstanding at once (1:
one after the other, the latency; more: what a busy stage manager sees).
Reported: wall time per request and the client process's CPU per request
(user and system), and Redis's own CPU per request beside.
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, os, sys, time
which, path, count, window = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from punchd.redisbook import REGISTER, encodeBody
body = encodeBody(True, 1000.0, "s1", ("peer-0000001",), ("198.51.100.1", 40000), (("192.168.1.2", 40000),))
def argsFor(i):
    name = "peer-%07d" % (i % 10000)
    return ["pb:e:" + name, "pb:seen"], [name, body, b"", "1000.5", "65000", "1000000", "pb:", "1000000", "1000000"]

if which == "asyncio":
    from twisted.internet import asyncioreactor
    asyncioreactor.install()
from twisted.internet import reactor, defer

results = {}

def measure(label, one):
    @defer.inlineCallbacks
    def run():
        start = time.perf_counter(); cpu = time.process_time()
        done = 0
        def loop():
            nonlocal done
            ds = []
            for _ in range(window):
                ds.append(one(done)); done += 1
            return defer.gatherResults(ds)
        while done < count:
            yield loop()
        results[label] = {
            "wallMicroseconds": 1e6 * (time.perf_counter() - start) / count,
            "cpuMicroseconds": 1e6 * (time.process_time() - cpu) / count,
        }
    return run()

@defer.inlineCallbacks
def main():
    if which.startswith("txredisapi"):
        import txredisapi
        if which == "txredisapi":
            c = yield txredisapi.UnixConnection(path, charset=None, convertNumbers=False)
        else:
            # The protocol alone, without the connection pool's handler.
            from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
            c = yield connectProtocol(
                UNIXClientEndpoint(reactor, path),
                txredisapi.RedisProtocol(charset=None, convertNumbers=False),
            )
            yield c.whenConnected()
        sha = yield c.script_load(REGISTER)
        register = lambda i: c.evalsha(sha, *argsFor(i))
        getset = lambda i: c.get("k%d" % (i % 10000)).addCallback(lambda _: c.set("k%d" % (i % 10000), body, pexpire=65000))
    else:
        import asyncio
        import redis.asyncio
        c = redis.asyncio.Redis(unix_socket_path=path)
        sha = yield defer.Deferred.fromFuture(asyncio.ensure_future(c.script_load(REGISTER)))
        def register(i):
            keys, args = argsFor(i)
            return defer.Deferred.fromFuture(asyncio.ensure_future(c.evalsha(sha, 2, *keys, *args)))
        async def gs(i):
            await c.get("k%d" % (i % 10000))
            await c.set("k%d" % (i % 10000), body, px=65000)
        getset = lambda i: defer.Deferred.fromFuture(asyncio.ensure_future(gs(i)))
    for i in range(10000):
        yield register(i)
    for i in range(10000):
        yield getset(i)
    yield measure("register script", register)
    yield measure("GET + SET PX", getset)
    print(json.dumps(results))
    reactor.stop()

reactor.callWhenRunning(lambda: main().addErrback(lambda f: (f.printTraceback(sys.stderr), reactor.stop())))
reactor.run()
"""


def redisCpu(server):
    fields = server.info("cpu")
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.redisclient")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--window", type=int, default=1)
    args = parser.parse_args(argv)
    from bench.children import childEnvironment
    from punchd.test.redisserver import RedisServer

    server = RedisServer(unix=True).start()
    try:
        for which in ("txredisapi", "txredisapi-protocol", "asyncio"):
            before = redisCpu(server)
            child = subprocess.run(
                [sys.executable, "-c", CHILD, which, server.socketPath, str(args.count), str(args.window)],
                env=childEnvironment(),
                capture_output=True,
            )
            if child.returncode or not child.stdout.strip():
                raise RuntimeError(f"{which}: {child.stderr.decode()[-3000:]}")
            out = child.stdout
            redisSeconds = redisCpu(server) - before
            figures = json.loads(out)
            # Both measurements and the 20 000 warm-up requests ran on Redis.
            perRequest = 1e6 * redisSeconds / (2 * args.count + 20000)
            for label, f in figures.items():
                print(
                    f"{which:<20} window {args.window:<3} {label:<16}"
                    f" {f['wallMicroseconds']:7.1f} us wall, {f['cpuMicroseconds']:7.1f} us client CPU"
                    f" per request; redis-server ~{perRequest:.1f} us CPU per request"
                )
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
