"""
System tests: every pairing of {original test-server, punch-server
--seed-compat} with {original test-client, punch-peer}, in both roles, as
real processes on 127.0.0.1.

The original programs are played by L{punchd.test.seedfake}, run as
processes of their own.  Against an original test-server a punch-peer runs
with C{--seed-compat}.
"""

import re
import sys
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from tests.processes import LISTENING, TREE_PRELUDE, TREE_TWISTD, waitFor

SEEDFAKE = [
    sys.executable,
    "-c",
    TREE_PRELUDE + "from punchd.test.seedfake import main; sys.exit(main())",
]

ORIGINAL_SERVER = re.compile(r"Connection Server ready to receive on port (\d+)\.")


def heard(sender, receiver):
    """
    The line a receiver of either kind prints for the sender's direct
    message: the original prints the text on a line of its own, punch-peer
    after C{->> }.
    """
    return re.compile(
        rf"(^|->> )This is a direct P2P message from {sender} to {receiver}$"
    )


class SeedPairingTestsMixin:
    """
    Start a server of one kind, then alice and bob, each of one kind, and
    see both print the other's direct message.
    """

    serverKind = None
    #: Seconds after bob's start by which both must have heard the other.
    within = None
    #: Receive attempts between two registrations of an original client.
    attempts = 30

    def startServer(self, processes):
        if self.serverKind == "original":
            argv = SEEDFAKE + ["server", "-p", "0", "-i", "127.0.0.1"]
            pattern = ORIGINAL_SERVER
        else:
            argv = TREE_TWISTD + [
                "punch-server", "--interface", "127.0.0.1", "--port", "0", "--seed-compat",
            ]
            pattern = LISTENING
        processes.start("server", argv)
        seen, lines = waitFor(processes, {("server", "port"): pattern}, 20)
        self.assertIn(("server", "port"), seen, f"the server did not start: {lines}")
        return int(seen[("server", "port")][1].group(1))

    def startClient(self, processes, kind, name, contact, port):
        """
        Start a client.

        @return: A pattern of the line it prints once it has registered, or
            is registering.
        """
        if kind == "original":
            argv = SEEDFAKE + [
                "client", "-s", "127.0.0.1", "-p", str(port), "-n", name, "-c", contact,
                "--attempts", str(self.attempts),
            ]
            registered = r"^Registering with Stage Manager\.$"
        else:
            argv = TREE_TWISTD + [
                "punch-peer", "-s", f"127.0.0.1:{port}", "-n", name, "-c", contact,
            ]
            if self.serverKind == "original":
                argv.append("--seed-compat")
                registered = "speaking the original's text protocol"
            else:
                registered = f"Waiting for {contact} to register"
        processes.start(name, argv)
        return re.compile(registered)

    def assertConnects(self, aliceKind, bobKind):
        with Processes() as processes:
            port = self.startServer(processes)
            registered = self.startClient(processes, aliceKind, "alice", "bob", port)
            seen, lines = waitFor(processes, {("alice", "registered"): registered}, 20)
            self.assertEqual(len(seen), 1, f"alice did not register: {lines}")
            start = time.monotonic()
            self.startClient(processes, bobKind, "bob", "alice", port)
            seen, lines = waitFor(
                processes,
                {
                    ("alice", "heard"): heard("bob", "alice"),
                    ("bob", "heard"): heard("alice", "bob"),
                },
                self.within + 15,
            )
            self.assertEqual(len(seen), 2, f"not both heard the other: {lines}")
            elapsed = max(t for t, _ in seen.values()) - start
            print(
                f"\n{self.serverKind} server, alice {aliceKind}, bob {bobKind}: both heard"
                f" the other {elapsed:.1f} s after bob's start"
            )
            self.assertLess(elapsed, self.within)
            processes.stopAll()
            self.assertEqual([l for l in lines if "Traceback" in l[1]], [])


class PunchServerLoopbackTests(SeedPairingTestsMixin, TestCase):
    """
    Every pairing through C{punch-server --seed-compat}.  An original
    client counts as proven at its second registration from one address,
    so original clients register every 5 receive attempts rather than 30,
    so that the test need not wait for the original's ~30 s.
    """

    serverKind = "punchd"
    within = 12.0
    attempts = 5

    def test_originalAndOriginal(self):
        """
        Two original test-clients connect.
        """
        self.assertConnects("original", "original")

    def test_originalThenPunchPeer(self):
        """
        An original test-client, then a punch-peer, connect.
        """
        self.assertConnects("original", "punch")

    def test_punchPeerThenOriginal(self):
        """
        A punch-peer, then an original test-client, connect.
        """
        self.assertConnects("punch", "original")

    def test_punchPeerAndPunchPeer(self):
        """
        Two punch-peers connect through a punch-server --seed-compat.
        """
        self.assertConnects("punch", "punch")


class OriginalServerLoopbackTests(SeedPairingTestsMixin, TestCase):
    """
    Every pairing through the original test-server, played by the stand-in;
    original clients register every 5 receive attempts rather than 30, so
    that the test need not wait for the original's ~30 s.
    """

    serverKind = "original"
    within = 12.0
    attempts = 5

    def test_originalAndOriginal(self):
        """
        Two original test-clients connect.
        """
        self.assertConnects("original", "original")

    def test_originalThenPunchPeer(self):
        """
        An original test-client, then a punch-peer --seed-compat, connect.
        """
        self.assertConnects("original", "punch")

    def test_punchPeerThenOriginal(self):
        """
        A punch-peer --seed-compat, then an original test-client, connect.
        """
        self.assertConnects("punch", "original")

    def test_punchPeerAndPunchPeer(self):
        """
        Two punch-peers --seed-compat connect through the original server.
        """
        self.assertConnects("punch", "punch")
