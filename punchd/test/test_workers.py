"""
Tests for L{punchd.workers} and C{punch-server --workers}.
"""

import socket

from twisted.internet.task import Clock
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.internet.error import ProcessTerminated
from twisted.trial.unittest import SynchronousTestCase

from twisted.internet import defer, reactor

from punchd import server_tap
from punchd.test.test_redisbook import RedisTestCase
from punchd.workers import (
    WorkerPool,
    bindReusePort,
    childArguments,
    reusePortAvailable,
    twistdArguments,
)


class FakeProcess:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)


class ProcessReactor(Clock):
    """
    A clock that records the processes it is asked to spawn.
    """

    def __init__(self):
        super().__init__()
        self.spawned = []

    def spawnProcess(self, protocol, executable, args, env=None, childFDs=None):
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append((protocol, args, process))
        return process


class Port:
    port = 4242


class ArgumentsTests(SynchronousTestCase):
    """
    What a worker is started with.
    """

    def test_child(self):
        """
        A worker gets the first process's options, its port, no metrics
        port and no --workers, and --worker.
        """
        self.assertEqual(
            childArguments(
                ["--port", "0", "--workers", "4", "--redis", "redis://h", "--metrics-port=9466",
                 "--ttl", "30", "--metrics-port", "9", "-p", "1"],
                4242,
                "g1",
            ),
            ["--redis", "redis://h", "--ttl", "30", "--port", "4242", "--worker-of", "g1"],
        )

    def test_twistd(self):
        """
        twistd runs a worker in the foreground, with no pid file, and the
        first process's --logger.
        """
        self.assertEqual(
            twistdArguments(["-n", "--logger", "punchd.logs.jsonObserver", "--pidfile", "x"]),
            ["--nodaemon", "--pidfile=", "--logger", "punchd.logs.jsonObserver"],
        )


class OptionsTests(SynchronousTestCase):
    """
    C{--workers} on the command line.
    """

    def setUp(self):
        from punchd.test.test_redisbook import requireClient

        requireClient(self)

    def parse(self, argv):
        options = server_tap.Options()
        options.parseOptions(argv)
        return options

    def test_needsRedis(self):
        """
        --workers without --redis, or with --systemd-socket or
        --alternate-port, is a usage error naming the options.
        """
        for argv, message in (
            (["--workers", "2"], "--workers needs --redis"),
            (["--workers", "0"], "--workers: 0 must be at least 1"),
            (["--worker-of", "g1"], "--worker-of needs --redis"),
            (["--workers", "2", "--redis", "redis://h", "--interface", "127.0.0.1",
              "--alternate-port", "9"], "--workers cannot go with --alternate-port"),
        ):
            e = self.assertRaises(usage.UsageError, self.parse, argv)
            self.assertTrue(str(e).startswith(message), str(e))

    def test_makeService(self):
        """
        With --workers 3, the port is bound with SO_REUSEPORT and a pool
        starts the two other workers with the same options.
        """
        if not reusePortAvailable():
            self.skipTest("no SO_REUSEPORT here")
        from punchd.workers import ReusePortDatagramServer

        options = self.parse(["--workers", "3", "--redis", "unix:///nonexistent", "--port", "0"])
        top = server_tap.makeService(options)
        store, port, stats, pool = list(top)
        self.assertIsInstance(port, ReusePortDatagramServer)
        self.assertIsInstance(pool, WorkerPool)
        self.assertEqual(pool.count, 2)
        self.assertIn("unix:///nonexistent", pool.command())


class ReusePortTests(SynchronousTestCase):
    """
    L{bindReusePort}.
    """

    def test_twoOnOnePort(self):
        """
        Two sockets bind one port.
        """
        if not reusePortAvailable():
            self.skipTest("no SO_REUSEPORT here")
        first = bindReusePort("127.0.0.1", 0)
        second = bindReusePort("127.0.0.1", first.address[1])
        for bound in (first, second):
            self.addCleanup(socket.close, bound.fileno)
        self.assertEqual(first.address, second.address)


class WorkerPoolTests(SynchronousTestCase):
    """
    L{WorkerPool} starts its workers, starts another when one ends, and
    stops them.
    """

    def setUp(self):
        self.reactor = ProcessReactor()
        self.pool = WorkerPool(
            2, Port(), ["--redis", "redis://h"], self.reactor, "g1", executable="py"
        )

    def test_started(self):
        """
        Each worker is a twistd punch-server on the pool's port.
        """
        self.pool.startService()
        self.assertEqual(len(self.reactor.spawned), 2)
        _, args, _ = self.reactor.spawned[0]
        self.assertEqual(
            args[3:],
            ["--nodaemon", "--pidfile=", "punch-server", "--redis", "redis://h", "--port", "4242",
             "--worker-of", "g1"],
        )
        self.assertEqual(self.pool.pids(), {2: 1000, 3: 1001})

    def test_restarted(self):
        """
        A worker that ends is started again a second later.
        """
        self.pool.startService()
        protocol, _, _ = self.reactor.spawned[0]
        protocol.processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertEqual(self.pool.pids(), {3: 1001})
        self.reactor.advance(1)
        self.assertEqual(self.pool.pids(), {2: 1002, 3: 1001})

    def test_stopped(self):
        """
        Stopping sends each worker SIGTERM, then SIGKILL to those left after
        5 s, and fires once all have ended; none is started again.
        """
        self.pool.startService()
        d = self.pool.stopService()
        processes = [p for _, _, p in self.reactor.spawned]
        self.assertEqual([p.signals for p in processes], [["TERM"], ["TERM"]])
        self.reactor.spawned[0][0].processEnded(Failure(ProcessTerminated(signal=15)))
        self.reactor.advance(5)
        self.assertEqual(processes[1].signals, ["TERM", "KILL"])
        self.assertNoResult(d)
        self.reactor.spawned[1][0].processEnded(Failure(ProcessTerminated(signal=9)))
        self.successResultOf(d)
        self.assertEqual(len(self.reactor.spawned), 2)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class FakeStageManager:
    def __init__(self, **stats):
        from collections import Counter

        from punchd.drops import DropCounter

        self.stats = Counter(stats)
        self.drops = DropCounter(Clock())


class WorkerStatsTests(RedisTestCase):
    """
    L{WorkerStats}: the workers' counters, added up through Redis.
    """

    @defer.inlineCallbacks
    def test_addedUp(self):
        """
        What a worker reports, the first process gathers, without its own;
        the metrics add it to the first's counters.
        """
        from punchd.metrics import exposition
        from punchd.workers import WorkerStats

        first = FakeStageManager(registrations=3)
        first.phonebook = self.book
        worker = FakeStageManager(registrations=4)
        worker.drops.drop("malformed", "x")
        reader = WorkerStats(self.store, "g1", "m1", first, reactor, report=False, prefix="t:")
        writer = WorkerStats(self.store, "g1", "m2", worker, reactor, report=True, prefix="t:")
        yield writer.report()
        others = yield reader.gather()
        self.assertEqual(others, [({"registrations": 4}, {"malformed": 1})])
        text = exposition(first, others)
        self.assertIn("punchd_registrations_total 7\n", text)
        self.assertIn('punchd_dropped_datagrams_total{reason="malformed"} 1\n', text)
        ttl = int(self.redis.command("PTTL", "t:workers:g1")[1:-2])
        self.assertTrue(0 < ttl <= 5000, ttl)
