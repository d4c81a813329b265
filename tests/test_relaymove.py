"""
Relayed paths when a NAT changes, in the NAT lab: alice and bob behind two
symmetric NATs connect through coturn, then bob's router is reconfigured
(L{tests.natlab.Lab.changeNAT}) with the real C{twistd} programs running:

  - as a full cone that keeps its flows: both paths move off the relay;
  - rebooted as a full cone, every flow lost and bob's ports new (a
    rebinding): both paths move off the relay;
  - rebooted, still symmetric: bob's allocation no longer reaches him, and
    alice follows him to his new port through her relay.

C{PUNCHD_MOVE_RUNS} sets the runs of each (default 1), for the figures
they print.  They need root and coturn; without them they skip, saying
why, and under C{CI=true} they fail.
"""

import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from tests.coturn import requireCoturn
from tests.natdemo import Run
from tests.natlab import ENDPOINT_INDEPENDENT, PROBE_ADDRESSES, Lab
from tests.natmatrix import TURN_SECRET, received, startCoturn, turnOptions
from tests.test_natlab import requireLab

#: The peers' --punch-timeout: how long each keeps trying direct beside
#: the relay.  Longer than the default 5 s, so that the NAT changes well
#: within it, after both relayed paths are up.
PUNCH_TIMEOUT = 10.0

#: Seconds watched after both paths are direct, for a move back.
SETTLE = 4.0


class Watch:
    """
    The lines of a L{Run}'s programs, each with the time it was read.

    @ivar timed: C{(time.monotonic(), label, line)}, in order.
    """

    def __init__(self, run):
        self.run = run
        self.timed = []

    def until(self, patterns, seconds):
        """
        Read lines until each C{(label, pattern)} matched one, or
        C{seconds} pass.

        @return: C{{(label, pattern): time}} of those that matched.
        """
        seen = {}
        for label, line in self.run.processes.lines(time.monotonic() + seconds):
            now = time.monotonic()
            self.run.lines.append((label, line))
            self.timed.append((now, label, line))
            for key in patterns:
                if key not in seen and key[0] == label and key[1].search(line):
                    seen[key] = now
            if patterns and len(seen) == len(patterns):
                break
        return seen

    def lines(self, who, text):
        """
        The lines of C{who} that contain C{text}.
        """
        return [line for _, label, line in self.timed if label == who and text in line]

    def arrivals(self, receiver, sender):
        """
        When the greeter of C{receiver} logged a message of C{sender}.
        """
        pattern = received(sender, receiver)
        return [when for when, label, line in self.timed if label == receiver and pattern.search(line)]


#: What each side says when its path moves off the relay.
MOVED = {
    who: (who, re.compile(rf"Direct path to {other} is up via .*: the path moved off the TURN relay"))
    for who, other in (("alice", "bob"), ("bob", "alice"))
}


#: What alice says when she follows bob to a new port through her relay.
FOLLOWED = ("alice", re.compile("bob moved from .*: its NAT gave it a new port"))


def changeUnderRelay(flush, natType, expected, seconds=PUNCH_TIMEOUT):
    """
    Connect alice and bob through coturn behind two symmetric NATs, 20 ms
    a link; once both relayed paths carry the greeters' messages, make
    natB a NAT of type C{natType} (rebooted, with C{flush}), wait up to
    C{seconds} for the C{expected} C{(label, pattern)}s, and watch
    L{SETTLE} seconds more.

    @return: The L{Watch}, the time the NAT changed, and when each of
        C{expected} was seen: C{{(label, pattern): time}}.
    """
    with tempfile.TemporaryDirectory() as directory, Lab(
        natA="symmetric", natB="symmetric", delay=0.02, alternateAddress=True
    ) as lab, Processes() as processes:
        secretFile = Path(directory) / "turn-secret"
        secretFile.write_text(TURN_SECRET + "\n")
        coturn = startCoturn(lab)
        try:
            run = Run(lab, processes)
            watch = Watch(run)
            run.startServer(turnOptions(lab, secretFile))
            extra = ["--punch-timeout", str(PUNCH_TIMEOUT)]
            run.startPeer("alice", "peerA", "alice", "bob", extra)
            if not watch.until({("alice", re.compile("Waiting for bob"))}, 30):
                raise AssertionError("alice did not register:\n" + run.transcript())
            run.startPeer("bob", "peerB", "bob", "alice", extra)
            relayed = {
                ("alice", re.compile("Path to bob is up, relayed via")),
                ("bob", re.compile("Path to alice is up, relayed via")),
                ("alice", received("bob", "alice")),
                ("bob", received("alice", "bob")),
                # The NATs as they were, before they change.
                ("alice", re.compile("My NAT: symmetric NAT")),
                ("bob", re.compile("My NAT: symmetric NAT")),
            }
            if len(watch.until(relayed, 20)) != len(relayed):
                raise AssertionError("the relayed paths did not come up:\n" + run.transcript())
            lab.changeNAT("natB", natType, flush=flush)
            changedAt = time.monotonic()
            seen = watch.until(set(expected), seconds)
            watch.until(set(), SETTLE)
            for label in ("alice", "bob", "server"):
                processes.stop(label)
            run.lines += list(processes.lines(time.monotonic() + 5))
        finally:
            coturn.stop()
    if os.environ.get("PUNCHD_TRANSCRIPT"):
        print(run.transcript())
    return watch, changedAt, seen


class ChangeNATTests(TestCase):
    """
    L{Lab.changeNAT} makes a router another type of NAT, keeping its flows
    or, rebooted, losing them.
    """

    def setUp(self):
        requireLab(self)

    def test_changeKeepsOrLosesFlows(self):
        """
        A symmetric NAT made a full cone behaves as one for new flows, and
        a flow under way keeps its public port, which anyone may now send
        to; rebooted, the same flow gets a new one.
        """
        with Lab(natA="symmetric", natB="symmetric") as lab:
            inet, inside = lab.agent("inet"), lab.agent("peerB")
            inet.bind(3478, PROBE_ADDRESSES[0], reflect=True)
            outsider, _ = inet.bind(3478, PROBE_ADDRESSES[1])
            sock, _ = inside.bind()
            before, _ = inside.query(sock, PROBE_ADDRESSES[0], 3478)
            lab.changeNAT("natB", "full-cone")
            # Before the flow sends again: the mapping is known already.
            inet.send(outsider, before[0], before[1], data="let in")
            letIn = [data for _, _, data in inside.recv(sock, wait=2.0, until="let in")]
            kept, _ = inside.query(sock, PROBE_ADDRESSES[0], 3478)
            lab.changeNAT("natB", "full-cone", flush=True)
            rebound, _ = inside.query(sock, PROBE_ADDRESSES[0], 3478)
            inet.close()
            found = lab.probe("peerB")
        self.assertEqual(kept, before)
        self.assertEqual(letIn, ["let in"])
        self.assertEqual(rebound[0], before[0])
        self.assertNotEqual(rebound[1], before[1])
        self.assertEqual((found["mapping"], found["filtering"]), (ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT))
        self.assertEqual(lab.natB, "full-cone")


class RelayMovesToDirectLabTests(TestCase):
    """
    A relayed path moves to direct when a NAT in the way starts letting
    the punch through.
    """

    def setUp(self):
        requireLab(self)
        requireCoturn(self)

    def assertMovedOnce(self, watch, changedAt, seen):
        """
        Each side moved off the relay once, after the change, and not back;
        the greeters' messages went on over the move.

        @return: The seconds from the change to direct on both sides, and
            how many messages each side's greeter missed (a gap of a second
            or more beyond the one between two messages).
        """
        transcript = watch.run.transcript()
        self.assertEqual(sorted(key for key in MOVED.values() if key not in seen), [], transcript)
        for who, other in (("alice", "bob"), ("bob", "alice")):
            self.assertEqual(len(watch.lines(who, "moved off the TURN relay")), 1, transcript)
            self.assertEqual(len(watch.lines(who, f"Path to {other} is up, relayed via")), 1, transcript)
            self.assertEqual(watch.lines(who, "Lost the direct path"), [], transcript)
            self.assertEqual(watch.lines(who, "Could not reach"), [], transcript)
            # Nor back to the relay, at a new port of the contact's.
            backToRelay = re.compile(rf"{other} moved from .* to .*\(relayed\)")
            self.assertEqual([l for l in watch.lines(who, "moved from") if backToRelay.search(l)], [], transcript)
        directAt = max(seen[MOVED["alice"]], seen[MOVED["bob"]])
        return directAt - changedAt, self.assertMessagesGoOn(watch, directAt)

    def assertMessagesGoOn(self, watch, since):
        """
        The greeters' messages still come both ways, to the end, after
        C{since}; no program logged a traceback.

        @return: How many messages each side's greeter missed, from the
            gaps of a second or more beyond the one between two messages:
            C{{"alice": n, "bob": n}}.
        """
        transcript = watch.run.transcript()
        self.assertEqual([line for _, line in watch.run.lines if "Traceback" in line], [], transcript)
        missed = {}
        for receiver, sender in (("alice", "bob"), ("bob", "alice")):
            arrivals = watch.arrivals(receiver, sender)
            self.assertGreater(len([t for t in arrivals if t > since]), SETTLE - 2, transcript)
            missed[receiver] = sum(round(b - a) - 1 for a, b in zip(arrivals, arrivals[1:]) if b - a > 1.5)
        return missed

    def measure(self, what, run):
        """
        Run C{run} C{PUNCHD_MOVE_RUNS} times (default 1), each returning
        the seconds from the change to what C{what} names and the messages
        missed, and print the figures.

        @return: The seconds of each run.
        """
        times, missed = [], []
        for _ in range(int(os.environ.get("PUNCHD_MOVE_RUNS", "1"))):
            elapsed, lost = run()
            times.append(elapsed)
            missed.append(lost)
        print(
            f"\nfrom the NAT change to {what}: {min(times) * 1000:.0f} to"
            f" {max(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f},"
            f" of {len(times)} runs; greeter messages missed (alice, bob):"
            f" {', '.join('%d/%d' % (m['alice'], m['bob']) for m in missed)}"
        )
        return times

    def test_movesToDirectWhenTheNATChanges(self):
        """
        Relayed behind two symmetric NATs, the paths move to direct when
        bob's router becomes a full cone and keeps its flows: each side
        says the path moved off the TURN relay, once, and does not go
        back; the greeters' messages go on.
        """
        times = self.measure(
            "direct on both sides",
            lambda: self.assertMovedOnce(*changeUnderRelay(False, "full-cone", MOVED.values())),
        )
        self.assertLess(max(times), PUNCH_TIMEOUT)

    def test_movesToDirectWhenTheNATReboots(self):
        """
        Relayed behind two symmetric NATs, the paths move to direct when
        bob's router comes back from a reboot as a full cone, having lost
        every flow: bob's public port changes (a rebinding), and both
        sides still say the path moved off the TURN relay, once, and do
        not go back.
        """
        self.measure(
            "direct on both sides, rebooted",
            lambda: self.assertMovedOnce(*changeUnderRelay(True, "full-cone", MOVED.values())),
        )

    def assertFollowed(self, watch, changedAt, seen):
        """
        Alice followed bob to his new port through her relay, and no path
        went direct or was lost.

        @return: The seconds from the change to it, and the messages
            missed (L{assertMessagesGoOn}).
        """
        transcript = watch.run.transcript()
        self.assertIn(FOLLOWED, seen, transcript)
        for who in ("alice", "bob"):
            self.assertEqual(watch.lines(who, "Direct path to"), [], transcript)
            self.assertEqual(watch.lines(who, "Lost the direct path"), [], transcript)
        return seen[FOLLOWED] - changedAt, self.assertMessagesGoOn(watch, seen[FOLLOWED])

    def test_relayedPathFollowsARebinding(self):
        """
        Relayed behind two symmetric NATs, when bob's router reboots, still
        symmetric, every public port of bob's changes, and his allocation
        on coturn points at one his NAT no longer has: alice hears him
        through her relay from a new port and follows him there, so that
        bob gets alice's messages again, and both paths stay relayed.
        """
        self.measure(
            "alice following bob through her relay",
            lambda: self.assertFollowed(*changeUnderRelay(True, "symmetric", [FOLLOWED])),
        )
