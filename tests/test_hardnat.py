"""
Many-port punches in the NAT lab (L{punchd.hardnat}): a symmetric NAT
(C{masquerade fully-random}) against a port-restricted cone one connects
directly, with coturn in the lab's server namespace as the fallback
(C{tests.test_natlab.WithoutRelayTests} connects them without it).

They need root and coturn; without them they skip, saying why.
C{PUNCHD_HARDNAT_RUNS} sets the number of runs of the measurement (default
20).
"""

import os
import re
import statistics

from twisted.trial.unittest import TestCase

from tests import test_relay
from tests.coturn import requireCoturn
from tests.test_natlab import requireLab


class HardNATLabTests(TestCase):
    """
    A symmetric NAT against a port-restricted cone one, directly.
    """

    connect = test_relay.RelayLabTests.connect
    lines = test_relay.RelayLabTests.lines

    def setUp(self):
        requireLab()
        requireCoturn()

    def direct(self, natA, natB):
        run, introducedAt, seen = self.connect(natA, natB, timeout=25, settle=8.0)
        if os.environ.get("PUNCHD_TRANSCRIPT"):
            print(run.transcript())
        result = {}
        for who, other in (("alice", "bob"), ("bob", "alice")):
            result[who] = self.lines(run, who, f"Direct path to {other} is up")
        return run, result

    def test_symmetricAgainstPortRestricted(self):
        """
        alice behind a symmetric NAT, bob behind a port-restricted cone:
        both paths end up direct, bob's over one of alice's extra sockets,
        and the log says what each side probes.
        """
        run, result = self.direct("symmetric", "port-restricted-cone")
        for who in ("alice", "bob"):
            self.assertEqual(len(result[who]), 1, run.transcript())
        self.assertEqual(
            len(self.lines(run, "bob", "alice's NAT maps per destination: probing 1024 ports of")), 1,
            run.transcript(),
        )
        self.assertEqual(
            len(self.lines(run, "alice", "My NAT maps per destination and bob's does not: probing")), 1,
            run.transcript(),
        )

    def test_successRate(self):
        """
        Over C{PUNCHD_HARDNAT_RUNS} runs (default 20), symmetric against
        port-restricted cone comes up direct on both sides in at least 95%
        of them; the rate, the time to the direct path and bob's probes are
        printed.
        """
        runs = int(os.environ.get("PUNCHD_HARDNAT_RUNS", "20"))
        ok, times, probes = 0, [], []
        for _ in range(runs):
            try:
                run, result = self.direct("symmetric", "port-restricted-cone")
            except AssertionError:
                continue
            if all(len(result[who]) == 1 for who in result):
                ok += 1
                times.append(
                    max(float(re.search(r"(\d+) ms after", result[w][0]).group(1)) for w in result) / 1000
                )
                found = self.lines(run, "bob", "Found a way through")
                if found:
                    probes.append(int(re.search(r"after (\d+) probe", found[0]).group(1)))
        print(
            f"\nsymmetric against port-restricted cone: direct in {ok} of {runs} runs;"
            f" direct path after the introduction: median {statistics.median(times):.1f} s,"
            f" at most {max(times):.1f} s; bob's probes: median {statistics.median(probes)},"
            f" at most {max(probes)}"
        )
        self.assertGreaterEqual(ok, 0.95 * runs)
