"""
System tests through real Linux NATs: the real C{twistd} programs in the
network namespaces of L{tests.natlab}.

They need root.  Without it they skip, saying why; with C{CI=true} a skip
is a failure, so that CI cannot pass by skipping them.
"""

import os
import re
import shutil
import statistics

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from punchd.test.optional import require
from tests.coturn import requireCoturn
from tests.natdemo import DUAL, IPV4, IPV6, KINDS, SERVER_PORT, Run
from tests.natlab import EXPECTED_BEHAVIOUR, NAT_TYPES, Lab, labUnavailableReason
from tests.natmatrix import MANY_PORTS, RELAYED, expectedPaths, pathsSeen, runPair


def requireLab(testCase):
    """
    Skip C{testCase}, saying why, when the NAT lab cannot run; under
    C{CI=true}, fail it instead.
    """
    reason = labUnavailableReason()
    require(testCase, reason is None, f"the NAT lab cannot run: {reason}")


class LabTestCase(TestCase):
    def setUp(self):
        requireLab(self)

    def connect(
        self, natA, natB, delay=0.0, loss=0.0, sameNAT=False, hairpin=False, timeout=30,
        verdicts=True, turn=False, stacks=(IPV4, IPV4), ipv6=None, also=frozenset(),
    ):
        """
        Run a pair in the lab (L{tests.natmatrix.runPair}, with C{stacks}
        and the lab's C{ipv6} mode) and check that everything waited for
        came, with no traceback.

        @return: The L{Run}, the time bob started, what was seen of what
            was waited for (C{{(label, pattern): (time, match)}}), the
            patterns of the outcome and those of the NAT verdicts.
        """
        if turn:
            requireCoturn(self)
        result = runPair(
            natA, natB, turn, sameNAT, delay, loss, hairpin, timeout, verdicts, stacks, ipv6, also
        )
        run = result.run
        self.assertEqual(result.missing, [], run.transcript())
        self.assertEqual([l for l in run.lines if "Traceback" in l[1]], [], run.transcript())
        return run, result.start, result.seen, result.outcome, result.verdicts


def _camel(natType):
    """
    A lab NAT type as a part of a method name: C{"port-restricted-cone"} is
    C{"portRestrictedCone"}.
    """
    first, *rest = natType.split("-")
    return first + "".join(word.capitalize() for word in rest)


def _pairTest(natA, natB):
    """
    The test of alice behind C{natA} and bob behind C{natB}, with coturn.
    """

    def test(self):
        run, _, seen, _, verdicts = self.connect(natA, natB, turn=True)
        said = {label: seen[(label, p)][1].group(1) for label, p in verdicts}
        self.assertEqual(said, {"alice": KINDS[natA], "bob": KINDS[natB]}, run.transcript())
        self.assertEqual(
            (pathsSeen(run.lines, "alice", "bob"), pathsSeen(run.lines, "bob", "alice")),
            expectedPaths(natA, natB),
            run.transcript(),
        )

    alice, bob = expectedPaths(natA, natB)
    how = alice if alice == bob else f"{alice} (alice) and {bob} (bob)"
    test.__name__ = f"test_{_camel(natA)}_{_camel(natB)}"
    test.__qualname__ = f"NATPairTests.{test.__name__}"
    test.__doc__ = (
        f"Behind a {natA} and a {natB} NAT, with coturn on offer, the peers"
        f" connect, {'through the relay' if alice == RELAYED else 'directly'}: {how};"
        " each names its NAT."
    )
    return test


class NATPairTests(LabTestCase):
    """
    Every ordered pair of NAT types, with coturn as the relay, and the way
    each connects asserted: one test each, so that trial reports each pair,
    as C{test_symmetric_fullCone}.
    """

    locals().update(
        (test.__name__, test) for test in (_pairTest(a, b) for a in NAT_TYPES for b in NAT_TYPES)
    )


class WithoutRelayTests(LabTestCase):
    """
    A stage manager without a TURN server.
    """

    def test_symmetricPairFails(self):
        """
        Behind two symmetric NATs, without a relay, each peer reports
        plainly that it could not reach the other, and no message passes.
        """
        run, _, _, _, _ = self.connect("symmetric", "symmetric")
        self.assertFalse(
            any("We received a peer message" in line for _, line in run.lines), run.transcript()
        )

    def test_symmetricAndPortRestrictedDirect(self):
        """
        A symmetric NAT against a port-restricted cone, without a relay:
        the verdicts travel in the registrations, introductions and
        candidates, and the peers connect directly by many ports.
        """
        run, _, _, _, _ = self.connect("symmetric", "port-restricted-cone")
        self.assertEqual(
            (pathsSeen(run.lines, "alice", "bob"), pathsSeen(run.lines, "bob", "alice")),
            (MANY_PORTS, MANY_PORTS),
            run.transcript(),
        )
        # alice's 256 extra sockets open and close without a line each:
        # her log shows her own socket's start and close, and the one line
        # of the many-port punch.
        ports = [
            line for label, line in run.lines
            if label == "alice" and ("starting on" in line or "Closed)" in line)
        ]
        self.assertEqual(len(ports), 2, ports)
        self.assertEqual(
            len([l for who, l in run.lines if who == "alice" and "from 256 sockets" in l]), 1
        )


class ImpairedNetworkTests(LabTestCase):
    """
    Delay and loss.
    """

    def test_delayAndLoss(self):
        """
        With 20 ms one-way delay per link and 5% loss, the pairs of
        endpoint-independent mappings still connect.
        """
        cones = [t for t in NAT_TYPES if t != "symmetric"]
        for natA in cones:
            for natB in cones:
                # Loss can fail a NAT behaviour test, so the verdicts are
                # not asserted here; the pair tests assert them.
                self.connect(natA, natB, delay=0.02, loss=5, timeout=45, verdicts=False)

    def test_timeToConnect(self):
        """
        Through two port-restricted NATs at 20 ms per link, both peers print
        each other's direct message within 2 s of the second peer's start.
        """
        times = []
        for _ in range(3):
            _, start, seen, outcome, _ = self.connect(
                "port-restricted-cone", "port-restricted-cone", delay=0.02
            )
            times.append(max(seen[key][0] for key in outcome) - start)
        median = statistics.median(times)
        print(f"\ntime to both direct messages: median {median * 1000:.0f} ms of {len(times)} runs")
        self.assertLess(median, 2.0)


class IPv6FirewallTests(LabTestCase):
    """
    Peers that speak IPv6 alone, behind NAT routers that are stateful IPv6
    firewalls.
    """

    def test_symmetricNATsConnectOverIPv6(self):
        """
        Behind two symmetric IPv4 NATs, whose IPv6 firewalls filter by
        address and port, peers given the stage manager's IPv6 address
        connect directly over IPv6 within 2 s of the second peer's start,
        at 20 ms per link, and each path is up within 0.5 s of the
        introduction (about one round trip, as for the IPv4
        port-restricted pair).
        """
        times = []
        afterIntroduction = []
        for _ in range(3):
            run, start, seen, outcome, _ = self.connect(
                "symmetric", "symmetric", delay=0.02, verdicts=False, stacks=(IPV6, IPV6)
            )
            times.append(max(seen[key][0] for key in outcome) - start)
            ups = sorted(line for label, line in run.lines if "Direct path to" in line)
            self.assertEqual(len(ups), 2, run.transcript())
            self.assertRegex(ups[0], r"Direct path to alice is up via \[2001:db8:a::2\]:\d+")
            self.assertRegex(ups[1], r"Direct path to bob is up via \[2001:db8:b::2\]:\d+")
            for line in ups:
                lag = re.search(r"round trip [\d.]+ ms, (\d+) ms after the introduction", line)
                self.assertIsNotNone(lag, line)
                afterIntroduction.append(int(lag.group(1)) / 1000)
        median = statistics.median(times)
        print(
            f"\nIPv6 through two firewalls, time to both direct messages: median"
            f" {median * 1000:.0f} ms of {len(times)} runs"
            f" ({', '.join(f'{t * 1000:.0f}' for t in times)} ms); path up"
            f" {statistics.median(afterIntroduction) * 1000:.0f} ms after the introduction"
            f" (median of {len(afterIntroduction)})"
        )
        self.assertLess(median, 2.0)
        self.assertLess(max(afterIntroduction), 0.5)


class DualStackTests(LabTestCase):
    """
    Peers that speak both families, knowing the stage manager (on C{::})
    by a name with an A and an AAAA record, behind NAT routers that are
    IPv6 firewalls too.
    """

    def ups(self, run, who, other):
        """
        The lines of C{who}'s log that say its path to C{other} came up
        or moved.
        """
        return [
            line for label, line in run.lines
            if label == who and (f"Direct path to {other} is up" in line or f"Path to {other} moved" in line)
        ]

    def test_symmetricNATsConnectOverIPv6(self):
        """
        Behind two symmetric IPv4 NATs, with no relay, dual-stack peers
        connect directly over IPv6, and each says so with the family.
        """
        run, _, _, _, _ = self.connect(
            "symmetric", "symmetric", delay=0.02, verdicts=False, stacks=(DUAL, DUAL)
        )
        for who, other, address in (("alice", "bob", "2001:db8:b::2"), ("bob", "alice", "2001:db8:a::2")):
            [up] = self.ups(run, who, other)
            self.assertRegex(
                up, rf"Direct path to {other} is up via \[{address}\]:\d+ \(public\) over IPv6"
            )

    def test_conesPreferIPv6OnATie(self):
        """
        Behind two port-restricted cone NATs, where both families punch
        and their round trips are alike, dual-stack peers end on IPv6: a
        path that came up over IPv4 moves once, to IPv6, saying why, and
        one that came up over IPv6 stays there.
        """
        weighed = {
            (who, re.compile(
                rf"Path to {other} moved to IPv6 .* \(IPv6 on a tie\)|Keeping the path to {other} over IPv6"
            ))
            for who, other in (("alice", "bob"), ("bob", "alice"))
        }
        run, _, _, _, _ = self.connect(
            "port-restricted-cone", "port-restricted-cone", delay=0.02, verdicts=False,
            stacks=(DUAL, DUAL), also=weighed,
        )
        for who, other, address in (("alice", "bob", "2001:db8:b::2"), ("bob", "alice", "2001:db8:a::2")):
            ups = self.ups(run, who, other)
            self.assertLessEqual(len(ups), 2, run.transcript())
            self.assertIn(f"[{address}]", ups[-1], run.transcript())

    def test_oneSideWithoutIPv6(self):
        """
        A dual-stack alice and a bob that speaks IPv4 alone connect over
        IPv4, behind two port-restricted cone NATs.
        """
        run, _, _, _, _ = self.connect(
            "port-restricted-cone", "port-restricted-cone", verdicts=False, stacks=(DUAL, IPV4)
        )
        for who, other in (("alice", "bob"), ("bob", "alice")):
            ups = self.ups(run, who, other)
            self.assertEqual(len(ups), 1, run.transcript())
            self.assertRegex(ups[0], rf"Direct path to {other} is up via [\d.]+:\d+ \(public")
            self.assertNotIn("IPv6", ups[0])

    def test_brokenIPv6CostsNothing(self):
        """
        With every IPv6 packet dropped in the NAT routers (a family that
        looks usable and is broken), dual-stack peers behind two
        port-restricted cones connect over IPv4 as fast as peers that speak
        IPv4 alone in the same lab: the median time from the introduction
        to both paths up, over runs taken in turn, within 10 %.  The time
        from bob's start to both direct messages is printed beside it.
        """
        afterIntroduction = {DUAL: [], IPV4: []}
        fromStart = {DUAL: [], IPV4: []}
        for _ in range(int(os.environ.get("PUNCHD_DUAL_RUNS", "4"))):
            for stack in (IPV4, DUAL):
                run, start, seen, outcome, _ = self.connect(
                    "port-restricted-cone", "port-restricted-cone", delay=0.02, verdicts=False,
                    stacks=(stack, stack), ipv6="drop",
                )
                fromStart[stack].append(max(seen[key][0] for key in outcome) - start)
                lags = []
                for who, other in (("alice", "bob"), ("bob", "alice")):
                    ups = self.ups(run, who, other)
                    self.assertEqual(len(ups), 1, run.transcript())
                    self.assertIn("over IPv4", ups[0])
                    lags.append(int(re.search(r"(\d+) ms after the introduction", ups[0]).group(1)))
                afterIntroduction[stack].append(max(lags) / 1000)
        median = {stack: statistics.median(values) for stack, values in afterIntroduction.items()}
        print(
            f"\nIPv6 dropped, paths up after the introduction: dual stack"
            f" {median[DUAL] * 1000:.0f} ms, IPv4 alone {median[IPV4] * 1000:.0f} ms"
            f" (ratio {median[DUAL] / median[IPV4]:.2f}); both direct messages after bob's"
            f" start: {statistics.median(fromStart[DUAL]) * 1000:.0f} and"
            f" {statistics.median(fromStart[IPV4]) * 1000:.0f} ms; medians of"
            f" {len(fromStart[DUAL])} runs each"
        )
        self.assertLessEqual(median[DUAL], median[IPV4] * 1.1, afterIntroduction)


class SameNATTests(LabTestCase):
    """
    Both peers behind one NAT.
    """

    def test_withoutHairpinning(self):
        """
        Behind one NAT without hairpinning, with coturn on offer, the
        peers connect directly over their local addresses.
        """
        run, _, seen, outcome, _ = self.connect(
            "port-restricted-cone", "port-restricted-cone", sameNAT=True, turn=True
        )
        self.assertEqual(
            (pathsSeen(run.lines, "alice", "bob"), pathsSeen(run.lines, "bob", "alice")),
            expectedPaths("port-restricted-cone", "port-restricted-cone", sameNAT=True),
            run.transcript(),
        )
        ups = [line for label, line in run.lines if "Direct path to" in line]
        self.assertEqual(len(ups), 2, run.transcript())
        for line in ups:
            self.assertRegex(line, r"via 10\.0\.1\.\d+:\d+ \(local\)")


class NATDiscoveryToolTests(LabTestCase):
    """
    coturn's turnutils_natdiscovery, a client nobody here wrote, against
    punch-server's RFC 5780 answers.
    """

    WORDS = {
        "Endpoint Independent": "endpoint-independent",
        "Address Dependent": "address-dependent",
        "Address and Port Dependent": "address-and-port-dependent",
    }

    def test_natdiscoveryAgrees(self):
        """
        For every NAT type, turnutils_natdiscovery reports the mapping and
        filtering the lab configured.
        """
        tool = shutil.which("turnutils_natdiscovery")
        require(
            self,
            tool is not None,
            "turnutils_natdiscovery is not installed (Debian package coturn)",
        )
        for natType in NAT_TYPES:
            with Lab(natA=natType, natB="full-cone", alternateAddress=True) as lab, Processes() as processes:
                run = Run(lab, processes)
                run.startServer()
                result = lab.run(
                    "peerA",
                    [tool, "-m", "-f", "-p", str(SERVER_PORT), lab.serverAddress],
                    timeout=60,
                )
            found = re.findall(
                r"NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent)"
                r" (Mapping|Filtering)",
                result.stdout + result.stderr,
            )
            said = {kind.lower(): self.WORDS[words] for words, kind in found}
            mapping, filtering = EXPECTED_BEHAVIOUR[natType]
            self.assertEqual(
                said, {"mapping": mapping, "filtering": filtering}, result.stdout + result.stderr
            )
