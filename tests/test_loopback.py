"""
System tests: the real C{twistd} programs on 127.0.0.1.
"""

import re
import signal
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes, twistdCommand

TWISTD = twistdCommand() + ["--nodaemon", "--pidfile="]
LISTENING = re.compile(r"Stage manager listening on 127\.0\.0\.1:(\d+)")


def received(sender, receiver):
    return re.compile(
        r"We received a peer message of len 46 from 127\.0\.0\.1,\d+ ->> "
        rf"This is a direct P2P message from {sender} to {receiver}$"
    )


def waitFor(processes, patterns, seconds):
    """
    Read the children's output until every C{(label, pattern)} in
    C{patterns} has matched a line of that child, or C{seconds} pass.

    @return: The C{time.monotonic()} at which each pattern first matched,
        and every line read, as C{(label, line)}.
    """
    seen = {}
    lines = []
    for label, line in processes.lines(time.monotonic() + seconds):
        lines.append((label, line))
        for key, pattern in patterns.items():
            if key not in seen and key[0] == label and pattern.search(line):
                seen[key] = (time.monotonic(), pattern.search(line))
        if len(seen) == len(patterns):
            break
    return seen, lines


class LoopbackTests(TestCase):
    """
    A stage manager and two peers, as three real processes.
    """

    def startServer(self, processes):
        processes.start(
            "server", TWISTD + ["punch-server", "--interface", "127.0.0.1", "--port", "0"]
        )
        seen, lines = waitFor(processes, {("server", "port"): LISTENING}, 20)
        self.assertIn(("server", "port"), seen, f"the stage manager did not start: {lines}")
        return int(seen[("server", "port")][1].group(1))

    def test_directMessages(self):
        """
        Both peers print each other's direct message within a second of the
        second peer's start, and leave the phonebook when stopped.
        """
        with Processes() as processes:
            port = self.startServer(processes)
            server = f"127.0.0.1:{port}"
            processes.start(
                "alice", TWISTD + ["punch-peer", "-s", server, "-n", "alice", "-c", "bob"]
            )
            waitFor(processes, {("alice", "registered"): re.compile("Waiting for bob")}, 20)
            start = time.monotonic()
            processes.start(
                "bob", TWISTD + ["punch-peer", "-s", server, "-n", "bob", "-c", "alice"]
            )
            seen, lines = waitFor(
                processes,
                {
                    ("alice", "message"): received("bob", "alice"),
                    ("bob", "message"): received("alice", "bob"),
                },
                20,
            )
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
            processes.stop("server")
            lines += list(processes.lines(time.monotonic() + 5))
            for label, process in processes.children.items():
                # twistd stopped by a signal ends itself with that signal.
                self.assertEqual(process.returncode, -signal.SIGTERM, label)
                said = [line for who, line in lines if who == label]
                self.assertTrue(said[-1].endswith("Server Shut Down."), said[-3:])
            self.assertEqual([l for l in lines if "Traceback" in l[1]], [])
