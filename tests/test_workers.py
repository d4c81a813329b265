"""
System tests: C{punch-server --workers 2 --redis URL}, real processes on
127.0.0.1 and a real C{redis-server}.
"""

import os
import re
import signal
import time
import urllib.request

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from punchd.test.optional import notInstalled, require
from punchd.test.redisserver import freePort, startRedis
from punchd.workers import reusePortAvailable
from tests.processes import LISTENING, TWISTD, bothReceived, waitFor
from tests.sharedclient import Client

try:
    import txredisapi
except ImportError:
    txredisapi = None

STARTED = re.compile(r"Started worker 2 of 2 \(pid (\d+)\)")


def registerMany(server, count, prefix):
    """
    Register C{count} names, each from a socket of its own.

    @return: What each answer was.
    """
    said = []
    for i in range(count):
        client = Client(f"{prefix}{i}")
        try:
            said.append(client.register(server))
        finally:
            client.close()
    return said


def registrations(port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return int(re.search(r"^punchd_registrations_total (\d+)$", text, re.M).group(1))


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class WorkersTests(TestCase):
    """
    Two workers on one port.
    """

    def setUp(self):
        require(self, txredisapi is not None, notInstalled("txredisapi", "redis"))
        require(self, reusePortAvailable(), "--workers needs Linux's SO_REUSEPORT")
        self.redis = startRedis(self, unix=False)

    def waitForWorkers(self, count):
        """
        Wait until C{count} workers listen on their introduction channels:
        they have reached Redis.
        """
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            reply = self.redis.command("PUBSUB", "CHANNELS", "punchd:intro:*")
            if int(reply.split(b"\r\n")[0][1:]) >= count:
                return
            time.sleep(0.05)
        self.fail(f"{count} workers did not reach Redis")

    def test_workerKilled(self):
        """
        Registrations from many sources are answered by two workers; when a
        worker is killed, another is started in its place, registrations
        are still answered, and two peers connect; stopping the stage
        manager stops its workers.
        """
        metricsPort = freePort()
        with Processes() as processes:
            processes.start(
                "server",
                TWISTD
                + ["punch-server", "--interface", "127.0.0.1", "--port", "0",
                   "--workers", "2", "--redis", self.redis.url,
                   "--metrics-port", str(metricsPort)],
            )
            seen, lines = waitFor(
                processes, {("server", "port"): LISTENING, ("server", "worker"): STARTED}, 20
            )
            self.assertEqual(len(seen), 2, f"the stage manager did not start: {lines}")
            server = f"127.0.0.1:{seen['server', 'port'][1].group(1)}"
            worker = int(seen["server", "worker"][1].group(1))
            self.waitForWorkers(2)
            self.assertEqual(registerMany(server, 20, "a"), ["registered"] * 20)
            # Counted by both workers, added up by the first.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if registrations(metricsPort) == 20:
                    break
                time.sleep(0.2)
            self.assertEqual(registrations(metricsPort), 20)

            os.kill(worker, signal.SIGKILL)
            seen, more = waitFor(
                processes,
                {
                    ("server", "ended"): re.compile(rf"Worker 2 \(pid {worker}\) ended"),
                    ("server", "again"): STARTED,
                },
                20,
            )
            lines += more
            self.assertEqual(len(seen), 2, f"no new worker: {lines}")
            replacement = int(seen["server", "again"][1].group(1))
            self.assertNotEqual(replacement, worker)
            # Its subscription may be up before its commands' connection:
            # it takes registrations once it says so, on the output it
            # shares with the first process, after the line of its start.
            seen, more = waitFor(
                processes, {("server", "reachable"): re.compile(r"Redis at \S+ is reachable")}, 20
            )
            lines += more
            self.assertEqual(len(seen), 1, f"the new worker did not reach Redis: {lines}")
            self.waitForWorkers(2)
            self.assertEqual(registerMany(server, 20, "b"), ["registered"] * 20)

            for name, contact in (("alice", "bob"), ("bob", "alice")):
                processes.start(
                    name, TWISTD + ["punch-peer", "-s", server, "-n", name, "-c", contact]
                )
            seen, more = waitFor(processes, bothReceived(), 20)
            lines += more
            self.assertEqual(len(seen), 2, f"no direct messages: {lines}")

            processes.stopAll()
            deadline = time.monotonic() + 10
            while alive(replacement) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertFalse(alive(replacement), "the worker outlived the stage manager")
            lines += list(processes.lines(time.monotonic() + 1))
            self.assertEqual([line for line in lines if "Traceback" in line[1]], [])
