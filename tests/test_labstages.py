"""
Two stage managers sharing a phonebook in Redis, in two server hosts of
the NAT lab (L{tests.natlab}'s C{secondServer}), with the peers behind
NATs split across them: the real C{twistd} programs, and a real
C{redis-server} on a unix socket that both server namespaces reach (they
share the filesystem).

They need root, C{redis-server} and txredisapi; without them they skip,
saying why (with C{CI=true}, they fail).
"""

import re
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from punchd.redisbook import decodeEntry
from punchd.test.optional import notInstalled, require
from punchd.test.redisserver import startRedis
from tests.natdemo import TWISTD, Run
from tests.natlab import Lab
from tests.natmatrix import received
from tests.test_natlab import requireLab

try:
    import txredisapi
except ImportError:
    txredisapi = None

PORT = 3478
REACHABLE = re.compile(r"Redis at \S+ is reachable")
INTRODUCED = re.compile("The stage manager introduced bob")
HOLDER = re.compile(r"This stage manager is (\w+) among those")


class TwoStageManagersLabTests(TestCase):
    """
    alice behind a port-restricted cone NAT registered with one stage
    manager, bob behind a restricted cone NAT with the other.
    """

    def setUp(self):
        requireLab(self)
        require(self, txredisapi is not None, notInstalled("txredisapi", "redis"))
        self.redis = startRedis(self, unix=True)

    def startStageManager(self, run, label, host, address):
        """
        Start C{punch-server --redis} as C{label} in the lab's C{host} on
        C{address}, and wait until it reaches Redis.

        @return: Its id among the stage managers sharing the phonebook.
        """
        run.processes.start(
            label,
            run.lab.command(
                host,
                TWISTD
                + [
                    "punch-server",
                    "--interface", address,
                    "--port", str(PORT),
                    "--redis", self.redis.url,
                ],
            ),
        )
        seen = run.waitFor({(label, REACHABLE), (label, HOLDER)}, 30)
        if len(seen) != 2:
            raise AssertionError(f"{label} did not reach Redis:\n" + run.transcript())
        return seen[label, HOLDER][1].group(1)

    def holderOf(self, name):
        """
        The id of the stage manager that holds C{name}'s entry in Redis.
        """
        reply = self.redis.command("GET", f"punchd:e:{name}")
        head, rest = reply.split(b"\r\n", 1)
        return decodeEntry(name, rest[: int(head[1:])]).holder

    def startPeer(self, run, label, host, name, wants, servers):
        """
        Start C{punch-peer} as C{label} in C{host}, registering every 2 s
        with the first of C{servers}, the others its fallbacks.
        """
        argv = ["punch-peer", "--name", name, "--peer", wants, "--interval", "2"]
        for server in servers:
            argv += ["--server", f"{server}:{PORT}"]
        run.processes.start(label, run.lab.command(host, TWISTD + argv))

    def expect(self, run, patterns, seconds, what):
        """
        Wait up to C{seconds} for every C{(label, pattern)}; fail, saying
        C{what} and showing the transcript, if one is missing.
        """
        seen = run.waitFor(patterns, seconds)
        missing = [(label, p.pattern) for label, p in patterns if (label, p) not in seen]
        self.assertEqual(missing, [], f"{what}:\n{run.transcript()}")
        return seen

    def test_acrossStageManagersAndFailover(self):
        """
        alice, registered with the first stage manager and listing the
        second as a fallback, and bob, registered with the second, connect
        directly: alice's NAT lets in only the first, which sends her
        introduction.  With the first killed, alice moves to the second,
        which then introduces her to bob again (bob restarted), and they
        connect directly again.
        """
        with Lab(
            natA="port-restricted-cone", natB="restricted-cone", secondServer=True
        ) as lab, Processes() as processes:
            run = Run(lab, processes)
            one, two = lab.serverAddress, lab.secondServerAddress
            try:
                first = self.startStageManager(run, "one", "server", one)
                second = self.startStageManager(run, "two", "server2", two)
                self.startPeer(run, "alice", "peerA", "alice", "bob", (one, two))
                self.expect(run, {("alice", re.compile("Waiting for bob"))}, 30, "alice waits")
                self.startPeer(run, "bob", "peerB", "bob", "alice", (two,))
                self.expect(
                    run,
                    {
                        ("alice", INTRODUCED),
                        ("alice", received("bob", "alice")),
                        ("bob", received("alice", "bob")),
                    },
                    20,
                    "no direct path across the stage managers",
                )
                self.assertEqual((self.holderOf("alice"), self.holderOf("bob")), (first, second))
                processes.children["one"].kill()
                processes.children["one"].wait()
                killed = time.monotonic()
                moved = re.compile(
                    rf"not answering: .* Registering with {re.escape(two)}:{PORT} instead"
                )
                seen = self.expect(run, {("alice", moved)}, 20, "alice did not move")
                print(f"\nalice moved {seen['alice', moved][0] - killed:.1f} s after the kill")
                # Her entry is the second's once her registration there is
                # recorded.
                for _ in range(50):
                    if self.holderOf("alice") == second:
                        break
                    run.waitFor(set(), 0.1)
                self.assertEqual(self.holderOf("alice"), second, run.transcript())
                processes.stop("bob")
                self.startPeer(run, "bob2", "peerB", "bob", "alice", (two,))
                self.expect(
                    run,
                    {
                        ("alice", INTRODUCED),
                        ("alice", received("bob", "alice")),
                        ("bob2", received("alice", "bob")),
                    },
                    20,
                    "alice was not introduced again through the second stage manager",
                )
            finally:
                processes.stopAll()
                run.lines += list(processes.lines(time.monotonic() + 2))
        self.assertEqual(
            [line for line in run.lines if "Traceback" in line[1]], [], run.transcript()
        )
