"""
The NAT-lab matrix: how two peers behind NATs of given types connect, in
real Linux NATs with the real C{twistd} programs (L{tests.natlab}), with
coturn as the relay in the lab's server namespace or without one.

L{tests.test_natlab} asserts each pair once; run as a program, this
measures each pair over several runs, for README's "Which NATs connect"::

    sudo python -m tests.natmatrix --runs 3
    sudo python -m tests.natmatrix --runs 20 --pair symmetric:port-restricted-cone --no-turn

For each pair it prints the runs that connected as expected, the median
time from the second peer's start to both paths (and from the
introduction, as the peers log it), how the paths came up, and the UDP
datagrams each peer's namespace sent until then (C{Udp: OutDatagrams} of
its C{/proc/net/snmp}: registrations, NAT discovery, probes and the direct
messages).  It needs root, as the lab does; it is not part of the test
suite.
"""

import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from twisted.python import usage

from punchd.demo import Processes
from tests.coturn import Coturn, coturnUnavailable
from tests.natdemo import IPV4, Run
from tests.natlab import (
    ADDRESS_AND_PORT_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    EXPECTED_BEHAVIOUR,
    ALL_NAT_TYPES,
    NAT_TYPES,
    Lab,
    labUnavailableReason,
)

#: How the path between two peers comes up, as the lab asserts it and
#: C{tests.natmatrix} measures it: directly between their public addresses,
#: directly through the address the stage manager did not see (a symmetric
#: NAT's new port, learned from its probe), directly by probing many ports,
#: directly between local addresses, or through the TURN relay.
PUBLIC = "public"
PEER_REFLEXIVE = "peer-reflexive"
MANY_PORTS = "many ports"
LOCAL = "local"
RELAYED = "relayed"


def expectedPaths(a, b, sameNAT=False):
    """
    How alice behind a NAT of type C{a} and bob behind one of type C{b}
    reach each other, with a TURN relay on offer, from the NATs' mapping
    and filtering (L{EXPECTED_BEHAVIOUR}): both that keep one mapping
    punch with one probe; one that maps per destination gets in with its
    new port where the other lets in any port of an address it sent to,
    and by many ports where the other lets in only the exact port; two that
    map per destination go through the relay.

    @return: C{(alice's, bob's)}, each one of L{PUBLIC}, L{PEER_REFLEXIVE},
        L{MANY_PORTS}, L{LOCAL} and L{RELAYED}.
    """
    if sameNAT:
        return LOCAL, LOCAL
    (mappingA, filteringA), (mappingB, filteringB) = EXPECTED_BEHAVIOUR[a], EXPECTED_BEHAVIOUR[b]
    hardA, hardB = mappingA != ENDPOINT_INDEPENDENT, mappingB != ENDPOINT_INDEPENDENT
    if hardA and hardB:
        return RELAYED, RELAYED
    if not (hardA or hardB):
        return PUBLIC, PUBLIC
    if (filteringB if hardA else filteringA) == ADDRESS_AND_PORT_DEPENDENT:
        return MANY_PORTS, MANY_PORTS
    # The side behind the symmetric NAT reaches the other's public address;
    # the other learns the symmetric NAT's new port from its probe.
    return (PUBLIC, PEER_REFLEXIVE) if hardA else (PEER_REFLEXIVE, PUBLIC)


_DIRECT = re.compile(r"Direct path to \w+ is up via .*?\((public|peer-reflexive|local)\)")


def pathsSeen(lines, who="alice", other="bob"):
    """
    How the path of C{who} to C{other} ended up, from the log C{lines}
    (C{(label, line)}), in the words of L{expectedPaths}; L{None} if no
    path came up.
    """
    own = [line for label, line in lines if label == who]
    direct = [m.group(1) for m in map(_DIRECT.search, own) if m]
    if direct:
        if any("of many ports" in line for _, line in lines):
            return MANY_PORTS
        return direct[-1]
    if any(f"Path to {other} is up, relayed via" in line for line in own):
        return RELAYED
    return None


#: coturn's port in the lab's server namespace, and its REST-API secret.
TURN_PORT = 3478
TURN_SECRET = "punchd lab turn secret"


def received(sender, receiver):
    """
    The line of C{receiver}'s log that shows C{sender}'s direct message.
    """
    return re.compile(
        rf"We received a peer message of len \d+ from [\d.:a-f]+,\d+ ->> "
        rf"This is a direct P2P message from {sender} to {receiver}$"
    )


def startCoturn(lab):
    """
    Start coturn in C{lab}'s server namespace, on L{TURN_PORT}, taking
    credentials made with L{TURN_SECRET}.

    @return: The started L{Coturn}; the caller stops it.
    """
    coturn = Coturn(
        host=lab.serverAddress,
        port=TURN_PORT,
        secret=TURN_SECRET,
        prefix=["ip", "netns", "exec", lab.netns("server")],
        relayPorts=(49152, 49200),
    )
    coturn.start()
    return coturn


def turnOptions(lab, secretFile):
    """
    The options that make the stage manager offer L{startCoturn}'s coturn,
    with the secret in the file C{secretFile}.
    """
    return ["--turn-server", f"{lab.serverAddress}:{TURN_PORT}", "--turn-secret-file", str(secretFile)]


_ELAPSED = re.compile(r"(\d+) ms after the introduction")


class PairRun:
    """
    One run of a pair in the lab.

    @ivar run: The L{Run}: its C{lines} are every line the programs logged.
    @ivar start: When bob started (C{time.monotonic()}).
    @ivar seen: What was waited for and seen: C{{(label, pattern): (time,
        match)}}.
    @ivar outcome: The patterns of the expected outcome.
    @ivar verdicts: The patterns of the NAT verdicts, if waited for.
    @ivar sent: The UDP datagrams each peer's namespace had sent when the
        wait ended, C{{"alice": n, "bob": n}}.
    """

    def __init__(self, run, start, seen, outcome, verdicts, sent):
        self.run = run
        self.start = start
        self.seen = seen
        self.outcome = outcome
        self.verdicts = verdicts
        self.sent = sent

    @property
    def missing(self):
        """
        The C{(label, pattern)}s waited for and not seen.
        """
        return [(label, p.pattern) for label, p in self.outcome | self.verdicts if (label, p) not in self.seen]

    def paths(self):
        """
        How alice's and bob's paths came up, in the words of
        L{expectedPaths}.
        """
        return pathsSeen(self.run.lines, "alice", "bob"), pathsSeen(self.run.lines, "bob", "alice")

    def timeToPaths(self):
        """
        Seconds from bob's start to the last of what the outcome waited for.
        """
        return max(self.seen[key][0] for key in self.outcome) - self.start

    def fromIntroduction(self):
        """
        Seconds from the introduction to the later of the two final paths,
        as the peers logged it, or L{None}.
        """
        times = []
        for who, other in (("alice", "bob"), ("bob", "alice")):
            ups = [
                line for label, line in self.run.lines
                if label == who and (f"Direct path to {other} is up" in line
                                     or f"Path to {other} is up, relayed" in line)
            ]
            match = _ELAPSED.search(ups[-1]) if ups else None
            if match is None:
                return None
            times.append(int(match.group(1)) / 1000)
        return max(times)


def runPair(
    natA, natB, turn=False, sameNAT=False, delay=0.0, loss=0.0, hairpin=False, timeout=30,
    verdicts=True, stacks=(IPV4, IPV4), ipv6=None, also=frozenset(),
):
    """
    Run the stage manager (with coturn beside it, if C{turn}), then alice
    behind natA, then bob behind natB once alice is registered; wait for
    what L{expectedPaths} says: each path up as it says and the direct
    messages, or, for a pair that needs the relay when there is none, the
    failure reports.  Everything is stopped and the lab torn down before
    it returns.

    @param stacks: How alice and bob know the stage manager, each one of
        L{tests.natdemo.STACKS}: by its IPv4 address, by its IPv6 one, or
        by a name with both (dual stack).
    @param ipv6: The lab's IPv6 mode (L{tests.natlab.IPV6_MODES}); with
        either stack not IPv4 alone, C{"firewall"} unless given.  In a lab
        with IPv6 the stage manager listens on C{::}, and peers that both
        speak IPv6 through firewalls are expected to connect directly over
        their public IPv6 addresses, whatever the NATs.
    @param also: More C{(label, pattern)}s to wait for, part of the
        outcome.
    @return: A L{PairRun}.
    @raise AssertionError: If alice did not register.
    """
    if ipv6 is None and stacks != (IPV4, IPV4):
        ipv6 = "firewall"
    if ipv6 == "firewall" and IPV4 not in stacks:
        paths = (PUBLIC, PUBLIC)
    else:
        paths = expectedPaths(natA, natB, sameNAT)
    with tempfile.TemporaryDirectory() as directory, Lab(
        natA=natA,
        natB=natB,
        sameNAT=sameNAT,
        hairpin=hairpin,
        delay=delay,
        loss=loss,
        alternateAddress=True,
        ipv6=ipv6,
    ) as lab, Processes() as processes:
        coturn = None
        extra = []
        if turn:
            secretFile = Path(directory) / "turn-secret"
            secretFile.write_text(TURN_SECRET + "\n")
            coturn = startCoturn(lab)
            extra = turnOptions(lab, secretFile)
        try:
            run = Run(lab, processes)
            run.startServer(extra, ipv6=ipv6 is not None)
            run.startPeer("alice", "peerA", "alice", "bob", stack=stacks[0])
            if not run.waitFor({("alice", re.compile("Waiting for bob"))}, 30):
                raise AssertionError("alice did not register:\n" + run.transcript())
            start = time.monotonic()
            run.startPeer("bob", "peerB", "bob", "alice", stack=stacks[1])
            verdicts = {
                ("alice", re.compile(r"My NAT: (.+?) at ")),
                ("bob", re.compile(r"My NAT: (.+?) at ")),
            } if verdicts else set()
            if RELAYED in paths and not turn:
                outcome = {
                    ("alice", re.compile("Could not reach bob")),
                    ("bob", re.compile("Could not reach alice")),
                }
            else:
                outcome = {
                    ("alice", received("bob", "alice")),
                    ("bob", received("alice", "bob")),
                }
                for who, other, path in (("alice", "bob", paths[0]), ("bob", "alice", paths[1])):
                    up = "Path to {} is up, relayed via" if path == RELAYED else "Direct path to {} is up"
                    outcome.add((who, re.compile(re.escape(up.format(other)))))
            outcome |= also
            seen = run.waitFor(outcome | verdicts, timeout)
            sent = {
                "alice": lab.udpCounters("peerA")["OutDatagrams"],
                "bob": lab.udpCounters("peerB")["OutDatagrams"],
            }
            for label in ("alice", "bob", "server"):
                processes.stop(label)
            run.lines += list(processes.lines(time.monotonic() + 5))
        finally:
            if coturn is not None:
                coturn.stop()
    return PairRun(run, start, seen, outcome, verdicts, sent)


def measure(natA, natB, runs, turn, sameNAT=False, out=print):
    """
    Run a pair C{runs} times and print a line of figures for it.

    @return: The figures, a L{dict}.
    """
    expected = expectedPaths(natA, natB, sameNAT)
    failed = RELAYED in expected and not turn
    if failed:
        # No path on either side.
        expected = (None, None)
    ok, times, introduced, sent, seenPaths = 0, [], [], {"alice": [], "bob": []}, []
    for _ in range(runs):
        try:
            result = runPair(natA, natB, turn=turn, sameNAT=sameNAT)
        except AssertionError:
            continue
        paths = result.paths()
        seenPaths.append(paths)
        if result.missing or paths != expected:
            continue
        ok += 1
        times.append(result.timeToPaths())
        since = result.fromIntroduction()
        if since is not None:
            introduced.append(since)
        for who in sent:
            sent[who].append(result.sent[who])
    figures = {
        "pair": f"{natA} / {'same NAT' if sameNAT else natB}",
        "turn": turn,
        "ok": ok,
        "runs": runs,
        "expected": "failure reported" if failed else " / ".join(expected),
        "fromStart": statistics.median(times) if times else None,
        "fromIntroduction": statistics.median(introduced) if introduced else None,
        "worstFromIntroduction": max(introduced) if introduced else None,
        "alice": statistics.median(sent["alice"]) if sent["alice"] else None,
        "bob": statistics.median(sent["bob"]) if sent["bob"] else None,
        "others": sorted({p for p in seenPaths if p != expected}),
    }
    out(_line(figures))
    return figures


def _seconds(value):
    return "-" if value is None else f"{value:.2f} s"


def _count(value):
    return "-" if value is None else f"{value:.0f}"


def _line(f):
    line = (
        f"{f['pair']:<45} {'TURN' if f['turn'] else 'none':<5} {f['ok']:>3}/{f['runs']:<3}"
        f" {f['expected']:<28} {_seconds(f['fromStart']):>8} {_seconds(f['fromIntroduction']):>8}"
        f" {_seconds(f['worstFromIntroduction']):>8}"
        f" {_count(f['alice']):>6} {_count(f['bob']):>6}"
    )
    if f["others"]:
        line += "  other outcomes: " + ", ".join(" / ".join(map(str, p)) for p in f["others"])
    return line


HEADER = (
    f"{'alice / bob':<45} {'relay':<5} {'ok':>7} {'expected path (alice / bob)':<28}"
    f" {'start':>8} {'intro':>8} {'worst':>8} {'alice':>6} {'bob':>6}"
)


def _pair(text):
    natA, _, natB = text.partition(":")
    for nat in (natA, natB):
        if nat not in ALL_NAT_TYPES:
            raise ValueError(f"{nat!r} is not one of {', '.join(ALL_NAT_TYPES)}")
    return natA, natB


class Options(usage.Options):
    synopsis = "sudo python -m tests.natmatrix [--runs N] [--pair A:B ...] [--no-turn | --both]"
    longdesc = (
        "Run each ordered pair of the NAT lab's types (or those given with"
        " --pair) N times, with coturn as the relay, without it (--no-turn) or"
        " both ways (--both), and one NAT shared without hairpinning, and print"
        " per pair the runs that connected as expected, the median time to the"
        " paths from the second peer's start and from the introduction, the"
        " slowest from the introduction, and the median UDP datagrams each peer"
        " sent until then.  --pair also takes the lab's other NAT types."
    )
    optFlags = [
        ["no-turn", None, "Offer no TURN relay."],
        ["both", None, "Each pair with a relay and without."],
        ["no-same-nat", None, "Leave out the pair behind one NAT."],
    ]
    optParameters = [["runs", "n", 3, "Runs of each pair.", int]]

    def __init__(self):
        super().__init__()
        self["pairs"] = []

    def opt_pair(self, text):
        """
        A pair A:B of NAT types to run (repeatable); by default every
        ordered pair.
        """
        try:
            self["pairs"].append(_pair(text))
        except ValueError as e:
            raise usage.UsageError(f"--pair: {e}") from None

    def postOptions(self):
        if self["runs"] < 1:
            raise usage.UsageError(f"--runs must be at least 1, not {self['runs']}")
        if self["no-turn"] and self["both"]:
            raise usage.UsageError("--no-turn and --both exclude each other")


def main(argv=None, out=print):
    """
    Run the matrix as the command line says.
    """
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
    except usage.UsageError as e:
        raise SystemExit(f"{e}\n{options}")
    reason = labUnavailableReason()
    turns = [False, True] if options["both"] else [not options["no-turn"]]
    if reason is None and True in turns:
        reason = coturnUnavailable()
    if reason is not None:
        raise SystemExit(f"The NAT lab cannot run: {reason}")
    pairs = options["pairs"] or [(a, b) for a in NAT_TYPES for b in NAT_TYPES]
    out(HEADER)
    started = time.monotonic()
    for turn in turns:
        for natA, natB in pairs:
            measure(natA, natB, options["runs"], turn, out=out)
        if not options["pairs"] and not options["no-same-nat"]:
            measure("port-restricted-cone", "port-restricted-cone", options["runs"], turn, True, out)
    out(f"{time.monotonic() - started:.0f} s in all")


if __name__ == "__main__":
    main()
