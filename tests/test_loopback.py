"""
System tests: the real C{twistd} programs on 127.0.0.1.
"""

import re
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from tests.processes import TWISTD, assertStopsCleanly, bothReceived, startServer, waitFor


class LoopbackTests(TestCase):
    """
    A stage manager and two peers, as three real processes.
    """

    def test_directMessages(self):
        """
        Both peers print each other's direct message within a second of the
        second peer's start, and leave the phonebook when stopped.
        """
        with Processes() as processes:
            (_, port), _ = startServer(self, processes, [])
            server = f"127.0.0.1:{port}"
            processes.start(
                "alice", TWISTD + ["punch-peer", "-s", server, "-n", "alice", "-c", "bob"]
            )
            waitFor(processes, {("alice", "registered"): re.compile("Waiting for bob")}, 20)
            start = time.monotonic()
            processes.start(
                "bob", TWISTD + ["punch-peer", "-s", server, "-n", "bob", "-c", "alice"]
            )
            seen, lines = waitFor(processes, bothReceived(), 20)
            self.assertEqual(len(seen), 2, f"no direct messages: {lines}")
            elapsed = max(t for t, _ in seen.values()) - start
            print(f"\nboth direct messages {elapsed * 1000:.0f} ms after the second peer's start")
            self.assertLess(elapsed, 1.0)
            processes.stop("alice")
            processes.stop("bob")
            seen, lines = waitFor(
                processes,
                {
                    ("server", "alice"): re.compile(r"alice at \S+ left"),
                    ("server", "bob"): re.compile(r"bob at \S+ left"),
                },
                10,
            )
            self.assertEqual(len(seen), 2, f"the peers did not unregister: {lines}")
            assertStopsCleanly(self, processes, lines)
