"""
System tests: stage managers sharing a phonebook in a real C{redis-server},
as real C{twistd} processes on 127.0.0.1.
"""

import re
import time

from twisted.trial.unittest import TestCase

from punchd import messages
from punchd.demo import Processes
from punchd.test.optional import notInstalled, require
from punchd.test.redisserver import startRedis
from tests.processes import LISTENING, TWISTD, bothReceived, waitFor

try:
    import txredisapi
except ImportError:
    txredisapi = None

REACHABLE = re.compile(r"Redis at \S+ is reachable")
UNREACHABLE = re.compile(r"Redis at \S+ is unreachable")


def startStageManager(testCase, processes, label, url, argv=()):
    """
    Start C{twistd punch-server --redis URL} as the child C{label} on a
    free port, and wait until it listens and reaches Redis.

    @return: Its C{HOST:PORT}.
    """
    processes.start(
        label,
        TWISTD
        + ["punch-server", "--interface", "127.0.0.1", "--port", "0", "--redis", url]
        + list(argv),
    )
    seen, lines = waitFor(
        processes, {(label, "port"): LISTENING, (label, "redis"): REACHABLE}, 20
    )
    testCase.assertEqual(len(seen), 2, f"{label} did not start: {lines}")
    return f"127.0.0.1:{seen[label, 'port'][1].group(1)}"


def startPeer(processes, name, contact, server, argv=()):
    processes.start(
        name,
        TWISTD + ["punch-peer", "-s", server, "-n", name, "-c", contact, "-i", "2"] + list(argv),
    )


def assertNoTraceback(testCase, processes, lines):
    processes.stopAll()
    testCase.assertEqual([line for line in lines if "Traceback" in line[1]], [])


class SharedPhonebookTests(TestCase):
    """
    Two stage managers on one Redis.
    """

    def setUp(self):
        require(self, txredisapi is not None, notInstalled("txredisapi", "redis"))
        self.redis = startRedis(self, unix=False)

    def test_acrossStageManagers(self):
        """
        alice registered with one stage manager and bob with another are
        introduced, each by its own stage manager, and connect.
        """
        with Processes() as processes:
            one = startStageManager(self, processes, "one", self.redis.url)
            two = startStageManager(self, processes, "two", self.redis.url)
            startPeer(processes, "alice", "bob", one)
            seen, lines = waitFor(
                processes, {("alice", "registered"): re.compile("Waiting for bob")}, 20
            )
            self.assertEqual(len(seen), 1, lines)
            start = time.monotonic()
            startPeer(processes, "bob", "alice", two)
            patterns = bothReceived()
            patterns["two", "introduced"] = re.compile(r"Introduced bob at \S+ and alice")
            seen, more = waitFor(processes, patterns, 20)
            lines += more
            self.assertEqual(len(seen), 3, f"no direct messages: {lines}")
            elapsed = max(t for t, _ in seen.values()) - start
            print(f"\nboth direct messages {elapsed * 1000:.0f} ms after the second peer's start")
            assertNoTraceback(self, processes, lines)

    def test_peerMoves(self):
        """
        A peer that registers with the other stage manager, with the cookie
        and name secret the first gave it, is taken there at once: the
        cookie key and the name's secret are shared.  Each refreshes it
        compactly while it holds the peer; once it has moved, the handle of
        the one it left is refused, to register in full.
        """
        with Processes() as processes:
            one = startStageManager(self, processes, "one", self.redis.url)
            two = startStageManager(self, processes, "two", self.redis.url)
            from tests.sharedclient import moveBetween

            said = moveBetween(one, two)
            self.assertEqual(
                said,
                ["registered", "refreshed", "registered", "refreshed", messages.REGISTER_IN_FULL],
                said,
            )
            processes.stopAll()

    def test_redisRestarted(self):
        """
        With Redis killed, the stage manager says so, keeps answering
        Binding requests and refuses registrations with error 500; once
        Redis is back, it says so and the peers, registering again, connect.
        """
        with Processes() as processes:
            one = startStageManager(self, processes, "one", self.redis.url)
            self.redis.kill()
            seen, lines = waitFor(processes, {("one", "gone"): UNREACHABLE}, 10)
            self.assertEqual(len(seen), 1, lines)
            from tests.sharedclient import bindingAnswered, registrationRefused

            self.assertTrue(bindingAnswered(one))
            self.assertEqual(registrationRefused(one), 500)
            startPeer(processes, "alice", "bob", one)
            startPeer(processes, "bob", "alice", one)
            seen, more = waitFor(
                processes, {("alice", "refused"): re.compile(r"refused the registration .* 500")}, 10
            )
            lines += more
            self.assertEqual(len(seen), 1, lines)
            self.redis.start()
            patterns = bothReceived()
            patterns["one", "back"] = REACHABLE
            seen, more = waitFor(processes, patterns, 30)
            lines += more
            self.assertEqual(len(seen), 3, f"no recovery: {lines}")
            assertNoTraceback(self, processes, lines)
