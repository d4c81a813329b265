"""
Hole punching through two real Linux NATs of your choice, watched side by
side.  As root:

    python -m tests.natdemo --nat-a symmetric --nat-b full-cone

builds the NAT lab of L{tests.natlab}, runs the real C{twistd punch-server}
on its internet and C{twistd punch-peer} behind each NAT, shows alice's and
bob's transcripts side by side under each one's verdict on its own NAT, and
tears everything down.
"""

import argparse
import re
import shutil
import sys
import textwrap
import time

from punchd.demo import Processes, twistdCommand
from tests.natlab import ALL_NAT_TYPES, SERVER_NAME, Lab, labUnavailableReason

TWISTD = twistdCommand() + ["--nodaemon", "--pidfile="]
SERVER_PORT = 8080
ALTERNATE_PORT = 8081

#: What punch-peer calls each of the lab's NAT types.
KINDS = {
    "full-cone": "full cone NAT",
    "restricted-cone": "restricted cone NAT",
    "port-restricted-cone": "port-restricted cone NAT",
    "symmetric": "symmetric NAT",
    # Discovery sees a new mapping per destination; it does not look at
    # how the ports are chosen.
    "symmetric-sequential": "symmetric NAT",
}

#: How a peer knows the stage manager (L{Run.startPeer}): by its IPv4
#: address, so that it speaks IPv4 alone; by its IPv6 address, IPv6 alone;
#: or by the name L{tests.natlab.SERVER_NAME}, with an A and an AAAA
#: record, so that it speaks both (dual stack).
IPV4 = "ipv4"
IPV6 = "ipv6"
DUAL = "dual"
STACKS = (IPV4, IPV6, DUAL)

_TIMESTAMP = re.compile(r"^\S+ \[[^\]]*\] ")
_VERDICT = re.compile(r"My NAT: (.*)")


class Run:
    """
    A stage manager and two peers in a lab, their output read line by line.
    """

    def __init__(self, lab, processes):
        self.lab = lab
        self.processes = processes
        self.lines = []

    def waitFor(self, patterns, seconds):
        """
        Read output until every C{(label, pattern)} has matched a line of
        that process, or C{seconds} pass.

        @return: C{{(label, pattern): (time.monotonic(), match)}} for those
            that matched.
        """
        seen = {}
        for label, line in self.processes.lines(time.monotonic() + seconds):
            self.lines.append((label, line))
            for key in patterns:
                who, pattern = key
                if key not in seen and who == label:
                    match = pattern.search(line)
                    if match:
                        seen[key] = (time.monotonic(), match)
            if patterns and len(seen) == len(patterns):
                break
        return seen

    def transcript(self):
        return "\n".join(f"{label:>6} | {line}" for label, line in self.lines)

    def startServer(self, extra=(), ipv6=False):
        """
        Start the stage manager with NAT behaviour discovery on its two
        IPv4 addresses, or, with C{ipv6}, on C{--interface ::} (IPv6 and
        IPv4, which leaves no room for discovery's other address and port).
        """
        if ipv6:
            listen = ["--interface", "::", "--port", str(SERVER_PORT)]
        else:
            listen = [
                "--interface", self.lab.serverAddress,
                "--port", str(SERVER_PORT),
                "--alternate-port", str(ALTERNATE_PORT),
                "--alternate-address", self.lab.serverAlternateAddress,
            ]
        self.processes.start(
            "server",
            self.lab.command("server", TWISTD + ["punch-server", *listen, *extra]),
        )
        pattern = re.compile("Stage manager listening" if ipv6 else "NAT behaviour discovery")
        if not self.waitFor({("server", pattern)}, 30):
            raise AssertionError("the stage manager did not start:\n" + self.transcript())

    def startPeer(self, label, host, name, wants, extra=(), stack=IPV4):
        """
        Start a peer that knows the stage manager as C{stack} says (one of
        L{STACKS}).
        """
        server = {
            IPV4: self.lab.serverAddress,
            IPV6: f"[{self.lab.serverAddress6}]",
            DUAL: SERVER_NAME,
        }[stack]
        self.processes.start(
            label,
            self.lab.command(
                host,
                TWISTD
                + [
                    "punch-peer",
                    "--server", f"{server}:{SERVER_PORT}",
                    "--name", name,
                    "--peer", wants,
                    *extra,
                ],
            ),
        )


def sideBySide(lines, verdicts, width):
    """
    Lay alice's and bob's lines out in two columns, in the order they came.

    @param lines: C{(label, line)} in order.
    @param verdicts: C{{label: verdict}}.
    @param width: The width of the whole table.
    @return: The rows, as text.
    """
    column = (width - 3) // 2
    rows = []

    def add(left, right):
        leftLines = textwrap.wrap(left, column) or [""]
        rightLines = textwrap.wrap(right, column) or [""]
        for i in range(max(len(leftLines), len(rightLines))):
            a = leftLines[i] if i < len(leftLines) else ""
            b = rightLines[i] if i < len(rightLines) else ""
            rows.append(f"{a:<{column}} | {b}")

    add("alice (peerA)", "bob (peerB)")
    add(verdicts.get("alice", "NAT verdict not known"), verdicts.get("bob", "NAT verdict not known"))
    rows.append("-" * column + "-+-" + "-" * column)
    for label, line in lines:
        text = _TIMESTAMP.sub("", line)
        if label == "alice":
            add(text, "")
        elif label == "bob":
            add("", text)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.natdemo",
        description="Punch through two real Linux NATs in network namespaces (needs root).",
    )
    parser.add_argument("--nat-a", choices=ALL_NAT_TYPES, default="port-restricted-cone")
    parser.add_argument("--nat-b", choices=ALL_NAT_TYPES, default="port-restricted-cone")
    parser.add_argument("--delay", type=float, default=20, help="one-way delay per link, ms (default 20)")
    parser.add_argument("--seconds", type=float, default=8, help="how long to watch (default 8)")
    parser.add_argument(
        "--stack", choices=STACKS, default=IPV4,
        help="the peers speak IPv4 alone (default); or the NAT routers are IPv6 firewalls"
        " too and the peers speak IPv6 alone (ipv6), or both families (dual)",
    )
    args = parser.parse_args(argv)
    reason = labUnavailableReason()
    if reason is not None:
        print(f"The NAT lab cannot run here: {reason}", file=sys.stderr)
        return 1
    print(f"Building the lab: alice behind a {args.nat_a} NAT, bob behind a {args.nat_b} NAT...")
    with Lab(
        natA=args.nat_a, natB=args.nat_b, delay=args.delay / 1000, alternateAddress=True,
        ipv6=None if args.stack == IPV4 else "firewall",
    ) as lab, Processes() as processes:
        run = Run(lab, processes)
        run.startServer(ipv6=args.stack != IPV4)
        run.startPeer("alice", "peerA", "alice", "bob", stack=args.stack)
        run.waitFor({("alice", re.compile("Waiting for bob"))}, 30)
        run.startPeer("bob", "peerB", "bob", "alice", stack=args.stack)
        run.waitFor(set(), args.seconds)
        for label in ("alice", "bob", "server"):
            processes.stop(label)
        run.lines += list(processes.lines(time.monotonic() + 5))
    verdicts = {}
    for label, line in run.lines:
        match = _VERDICT.search(line)
        if match and label in ("alice", "bob"):
            verdicts[label] = match.group(1)
    width = shutil.get_terminal_size((160, 24)).columns
    print("\n".join(sideBySide(run.lines, verdicts, width)))
    print("\nThe lab is torn down.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
