"""
Relaying through TURN in the NAT lab: coturn in the lab's server namespace,
started by the test with C{--use-auth-secret --static-auth-secret}, the
stage manager with C{--turn-server} and C{--turn-secret-file}, and the real
C{twistd punch-peer}s behind real Linux NATs.

They need root and coturn; without them they skip, saying why, and under
C{CI=true} they fail.
"""

import os
import re
import statistics
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from tests.coturn import requireCoturn
from tests.natdemo import Run
from tests.natlab import Lab
from tests.natmatrix import TURN_PORT, TURN_SECRET, received, startCoturn, turnOptions
from tests.test_natlab import requireLab


class RelayLabTests(TestCase):
    """
    Peers that cannot punch go through coturn; peers that can, do not.
    """

    def setUp(self):
        requireLab(self)
        requireCoturn(self)

    def connect(self, natA, natB, secret=TURN_SECRET, timeout=20, delay=0.0, settle=1.5):
        """
        Run coturn and the stage manager on the lab's server, alice behind
        natA, then bob behind natB once alice is registered; wait until
        each has the other's direct message, or C{timeout}.

        @return: The L{Run}, the time bob's introduction was logged, and
            what was seen: C{{(label, pattern): (time, match)}}.  The
            run's C{sent} is what alice and bob sent out through their NATs
            (L{tests.natlab.Lab.sent}).
        """
        secretFile = self.mktemp()
        with open(secretFile, "w") as f:
            f.write(secret + "\n")
        with Lab(natA=natA, natB=natB, delay=delay, alternateAddress=True) as lab, Processes() as processes:
            coturn = startCoturn(lab)
            try:
                run = Run(lab, processes)
                run.startServer(turnOptions(lab, secretFile) + ["--turn-realm", "punchd"])
                run.startPeer("alice", "peerA", "alice", "bob")
                if not run.waitFor({("alice", re.compile("Waiting for bob"))}, 30):
                    raise AssertionError("alice did not register:\n" + run.transcript())
                run.startPeer("bob", "peerB", "bob", "alice")
                introduced = ("alice", re.compile("The stage manager introduced bob"))
                patterns = {
                    introduced,
                    ("alice", received("bob", "alice")),
                    ("bob", received("alice", "bob")),
                }
                seen = run.waitFor(patterns, timeout)
                # A moment more, for a path that moves.
                run.waitFor(set(), settle)
                for label in ("alice", "bob", "server"):
                    processes.stop(label)
                run.lines += list(processes.lines(time.monotonic() + 5))
                run.sent = {"alice": lab.sent("natA"), "bob": lab.sent("natB")}
            finally:
                coturn.stop()
            run.coturn = coturn.output.decode("utf-8", "replace")
        missing = [p.pattern for key, p in patterns if (key, p) not in seen]
        self.assertEqual(missing, [], run.transcript())
        self.assertEqual([l for l in run.lines if "Traceback" in l[1]], [], run.transcript())
        return run, seen[introduced][0], seen

    def lines(self, run, who, text):
        return [line for label, line in run.lines if label == who and text in line]

    def test_symmetricThroughRelay(self):
        """
        Behind two symmetric NATs, 20 ms a link, the peers connect through
        coturn: each path is up relayed within 2 s of the introduction, says
        so, and carries the direct messages; neither says a direct path is
        up.  C{PUNCHD_RELAY_RUNS} sets the number of runs (default 3).
        """
        times = []
        allocations = []
        for _ in range(int(os.environ.get("PUNCHD_RELAY_RUNS", "3"))):
            run, introducedAt, _ = self.connect("symmetric", "symmetric", delay=0.02)
            if os.environ.get("PUNCHD_TRANSCRIPT"):
                print(run.transcript())
            for who, other in (("alice", "bob"), ("bob", "alice")):
                [up] = self.lines(run, who, f"Path to {other} is up, relayed via TURN server 192.0.2.10:{TURN_PORT}: ")
                self.assertEqual(self.lines(run, who, "Direct path to"), [], run.transcript())
                elapsed = float(re.search(r"(\d+) ms after the introduction", up).group(1))
                times.append(elapsed / 1000)
                allocated = re.search(
                    r"Allocated the relayed address \S+ on the TURN server \S+ in (\d+) ms",
                    "\n".join(self.lines(run, who, "Allocated the relayed address")),
                )
                allocations.append(float(allocated.group(1)) / 1000)
                self.assertRegex(
                    up,
                    "(a direct path is impossible between a symmetric NAT and a symmetric NAT"
                    f"|no direct candidate answered within 1.0 s|{other} came through the relay first)",
                )
        print(
            f"\nrelayed path up after the introduction: {min(times) * 1000:.0f} to"
            f" {max(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f}, of"
            f" {len(times)} paths; allocation: {min(allocations) * 1000:.0f} to"
            f" {max(allocations) * 1000:.0f} ms, median {statistics.median(allocations) * 1000:.0f}"
        )
        self.assertLess(max(times), 2.0, times)

    def test_symmetricAndPortRestrictedRelayedOnlyAfterWaiting(self):
        """
        A symmetric NAT and a port-restricted cone can punch only by probing
        many ports, so the verdicts do not send them to the relay at once:
        each side's path comes up, relayed only after no direct candidate
        answered within the wait (or because the other came through the
        relay first), or directly when the many-port punch
        (tests.test_hardnat) won the race.
        """
        run, _, _ = self.connect("symmetric", "port-restricted-cone")
        for who, other in (("alice", "bob"), ("bob", "alice")):
            relayed = self.lines(run, who, f"Path to {other} is up, relayed via TURN server")
            direct = self.lines(run, who, f"Direct path to {other} is up")
            self.assertTrue(relayed or direct, run.transcript())
            self.assertLessEqual(len(relayed), 1, run.transcript())
            for line in relayed:
                self.assertRegex(
                    line, f"(no direct candidate answered within 1.0 s|{other} came through the relay first)"
                )
                self.assertNotIn("impossible", line)

    def test_directWhenPossible(self):
        """
        Behind two port-restricted cone NATs, with a relay on offer, the
        path is direct: the relay is never used.
        """
        run, _, _ = self.connect("port-restricted-cone", "port-restricted-cone")
        for who, other in (("alice", "bob"), ("bob", "alice")):
            self.assertEqual(len(self.lines(run, who, f"Direct path to {other} is up")), 1, run.transcript())
            self.assertEqual(self.lines(run, who, "relayed via"), [], run.transcript())

    def test_refusingServer(self):
        """
        A stage manager with the wrong TURN secret: coturn refuses the
        credentials, each peer says so plainly with coturn's 401, and goes
        on punching directly, which works between port-restricted cones.
        """
        run, _, _ = self.connect(
            "port-restricted-cone", "port-restricted-cone", secret="not the secret"
        )
        for who, other in (("alice", "bob"), ("bob", "alice")):
            [refused] = self.lines(run, who, "gave no relayed address")
            self.assertIn(
                f"The TURN server 192.0.2.10:{TURN_PORT} gave no relayed address:"
                " Allocate refused: 401 Unauthorized. Going on with direct candidates only.",
                refused,
            )
            self.assertEqual(len(self.lines(run, who, f"Direct path to {other} is up")), 1, run.transcript())
