"""
Many-port punches in the NAT lab (L{punchd.hardnat}): a symmetric NAT
(C{masquerade fully-random}, or one that allocates ports in sequence)
against a port-restricted cone one connects directly, with coturn in the
lab's server namespace as the fallback
(C{tests.test_natlab.WithoutRelayTests} connects them without it).

They need root and coturn; without them they skip, saying why.
C{PUNCHD_HARDNAT_RUNS} sets the number of runs of the measurement against
the random NAT (default 20), C{PUNCHD_SEQNAT_RUNS} against the sequential
one (default 3).
"""

import os
import re
import statistics

from twisted.trial.unittest import TestCase

from punchd import hardnat
from tests import test_relay
from tests.coturn import requireCoturn
from tests.natdemo import KINDS
from tests.natlab import NAT_A_PUBLIC, NAT_B_PUBLIC
from tests.test_natlab import requireLab

#: The bound on bob's probes against a NAT that allocates in sequence.
SEQUENTIAL_PROBES = 100


class HardNATLabTests(TestCase):
    """
    A symmetric NAT against a port-restricted cone one, directly.
    """

    connect = test_relay.RelayLabTests.connect
    lines = test_relay.RelayLabTests.lines

    def setUp(self):
        requireLab(self)
        requireCoturn(self)

    def direct(self, natA, natB, settle=8.0):
        run, introducedAt, seen = self.connect(natA, natB, timeout=25, settle=settle)
        if os.environ.get("PUNCHD_TRANSCRIPT"):
            print(run.transcript())
        result = {}
        for who, other in (("alice", "bob"), ("bob", "alice")):
            result[who] = self.lines(run, who, f"Direct path to {other} is up")
        return run, result

    def measure(self, natA, runs, settle=8.0):
        """
        C{runs} runs of alice behind C{natA} and bob behind a
        port-restricted cone NAT.

        @return: The number of runs direct on both sides, and for each of
            them: the seconds from the introduction to the later direct
            path, bob's probes (where bob's probe found the way), and the
            C{(datagrams, bytes)} each of alice and bob sent to the other's
            public IP over the whole run (L{tests.natlab.Lab.sent}); and
            the set of alice's verdicts on her NAT.  The measured values
            are printed.
        """
        ok, times, probes, verdicts = 0, [], [], set()
        sent = {"alice": [], "bob": []}
        for _ in range(runs):
            try:
                run, result = self.direct(natA, "port-restricted-cone", settle)
            except AssertionError:
                continue
            if not all(len(result[who]) == 1 for who in result):
                continue
            ok += 1
            times.append(
                max(float(re.search(r"(\d+) ms after", result[w][0]).group(1)) for w in result) / 1000
            )
            found = self.lines(run, "bob", "Found a way through")
            if found:
                probes.append(int(re.search(r"after (\d+) probe", found[0]).group(1)))
            sent["alice"].append(run.sent["alice"].get(NAT_B_PUBLIC, (0, 0)))
            sent["bob"].append(run.sent["bob"].get(NAT_A_PUBLIC, (0, 0)))
            for line in self.lines(run, "alice", "My NAT: "):
                verdicts.add(re.search(r"My NAT: (.+?) at ", line).group(1))

        def datagrams(who):
            counts = [d for d, _ in sent[who]]
            size = statistics.median(b for _, b in sent[who]) / 1000
            return f"{who} median {statistics.median(counts)} dg {size:.1f} KB, at most {max(counts)} dg"

        print(
            f"\n{natA} against port-restricted-cone: direct in {ok} of {runs} runs;"
            f" direct path after the introduction: median {statistics.median(times):.2f} s,"
            f" at most {max(times):.2f} s; bob's probes: median {statistics.median(probes)},"
            f" at most {max(probes)}; sent to the peer's IP in each run of {settle:.0f} s"
            f" after the paths: {datagrams('alice')}; {datagrams('bob')}"
        )
        return ok, times, probes, sent, verdicts

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
            len(self.lines(run, "bob", f"alice's NAT maps per destination: probing {hardnat.BUDGET} ports of")), 1,
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
        of them; the rate, the time to the direct path, bob's probes and
        the datagrams sent are printed.
        """
        runs = int(os.environ.get("PUNCHD_HARDNAT_RUNS", "20"))
        ok, _, _, _, _ = self.measure("symmetric", runs)
        self.assertGreaterEqual(ok, 0.95 * runs)

    def test_sequentialPortsPredicted(self):
        """
        Against a NAT that allocates ports in sequence, bob's first probes,
        the ports after the one the stage manager saw, meet one of alice's
        new mappings: in every one of C{PUNCHD_SEQNAT_RUNS} runs (default
        3) both paths come up direct after fewer than
        L{SEQUENTIAL_PROBES} probes of bob's, and bob sends fewer than that
        many datagrams to alice's IP in the whole run, greetings included
        (against the random NAT, bob's probes alone number hundreds).
        alice's discovery calls her NAT what it calls a random one.
        """
        runs = int(os.environ.get("PUNCHD_SEQNAT_RUNS", "3"))
        ok, times, probes, sent, verdicts = self.measure("symmetric-sequential", runs, settle=4.0)
        self.assertEqual(ok, runs)
        self.assertEqual(verdicts, {KINDS["symmetric-sequential"]})
        self.assertEqual(len(probes), runs)
        self.assertLess(max(probes), SEQUENTIAL_PROBES, probes)
        self.assertLess(max(d for d, _ in sent["bob"]), SEQUENTIAL_PROBES, sent)
        self.assertLess(max(times), 5.0, times)
