"""
System tests of C{punch-peer --forward} with real programs nobody here
wrote: WireGuard (Debian's C{wireguard-go} and C{wireguard-tools}) between
two hosts behind two port-restricted cone NATs of L{tests.natlab}, with
C{ping} and C{iperf3} through the tunnel, and C{iperf3 -u} straight
through the forwarders.

Each host runs the commands of README.rst's "WireGuard through two NATs",
read from it: alice's as written, bob's with the names and addresses
swapped as it says, and in both only the interface name, the stage
manager's address and C{twistd}'s path changed.

They need root and the tools.  Without them they skip, saying why; with
C{CI=true} a skip is a failure, so that CI cannot pass by skipping them.
Every process is stopped by pid, and the lab's namespaces removed, also
when a test fails.
"""

import json
import os
import re
import shlex
import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

from punchd.demo import Processes, twistdCommand
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.test.optional import require
from tests.natdemo import SERVER_PORT, Run
from tests.natlab import Lab
from tests.test_natlab import requireLab

README = Path(__file__).resolve().parent.parent / "README.rst"

#: The Debian package of each program the tests run.
TOOLS = {
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "iperf3": "iperf3",
    "ping": "iputils-ping",
}

#: Each host's address inside the tunnel, as in README.rst.
TUNNEL_ADDRESSES = {"peerA": "10.99.0.1", "peerB": "10.99.0.2"}
#: WireGuard's overhead on each datagram: a 16-byte header and a 16-byte
#: tag, the inner packet padded to a multiple of 16 bytes.
WIREGUARD_OVERHEAD = 32

IPERF_PORT = 5201
#: The forwarding port of the second pair of peers, which carries
#: C{iperf3 -u}'s datagrams.
UDP_FORWARD_PORT = 5202
#: iperf3's UDP datagram: as large as a path carries, within an Ethernet
#: frame.
UDP_LENGTH = min(1400, MAX_PAYLOAD_BYTES)
UDP_RATES_MBITS = (1, 10, 50)
SECONDS = 3


def requireTools(testCase):
    """
    Skip, or fail under C{CI=true}, unless every program in L{TOOLS} is
    installed.
    """
    missing = [
        f"{tool} (Debian package {package})"
        for tool, package in TOOLS.items()
        if shutil.which(tool) is None
    ]
    require(testCase, not missing, "not installed: " + ", ".join(missing))


def readmeBlocks():
    """
    The literal blocks of README.rst's "WireGuard through two NATs".

    @return: A list of blocks, each a list of its commands, continuation
        lines joined.
    """
    text = README.read_text(encoding="utf-8")
    section = text.split("\nWireGuard through two NATs\n", 1)[1]
    section = re.split(r"\n[^\n]+\n=+\n", section[section.index("\n") + 1 :], maxsplit=1)[0]
    blocks = []
    for match in re.finditer(r"::\n\n((?: {4}.*\n|\n)+)", section):
        literal = match.group(1).replace("\\\n", " ")
        blocks.append([line.strip() for line in literal.splitlines() if line.strip()])
    return blocks


def forBob(command):
    """
    Alice's command from README.rst as bob runs it: the names and the
    tunnel addresses swapped.
    """
    swap = {"alice": "bob", "bob": "alice", "10.99.0.1": "10.99.0.2", "10.99.0.2": "10.99.0.1"}
    return re.sub(r"alice|bob|10\.99\.0\.[12]", lambda m: swap[m.group(0)], command)


class ReadmeTests(SynchronousTestCase):
    """
    The recipe in README.rst's "WireGuard through two NATs".
    """

    def test_mtuFitsAPath(self):
        """
        The MTU the recipe gives WireGuard makes datagrams that a path
        carries.
        """
        [mtu] = [
            int(command.split()[-2])
            for command in readmeBlocks()[1]
            if command.startswith("ip link set") and " mtu " in command
        ]
        # WireGuard pads a packet to a multiple of 16, but never past the
        # MTU: its datagrams are at most the MTU and its 32 bytes.
        self.assertLessEqual(mtu + WIREGUARD_OVERHEAD, MAX_PAYLOAD_BYTES)


class WireGuardTests(TestCase):
    """
    WireGuard through two port-restricted cone NATs over punchd.
    """

    def setUp(self):
        requireLab(self)
        requireTools(self)

    def tunnel(self, stack):
        """
        Build the lab and run README.rst's recipe in it: the keys and
        WireGuard on both peers' hosts, then alice's forwarding peer, then
        bob's once alice is registered; then ping across the tunnel until
        a ping comes back.

        @param stack: The L{ExitStack} that tears it all down.
        @return: The L{Run}, and the seconds from bob's start until both
            paths were up and until the first ping came back.
        """
        # The keys, alice's commands, the ping; then the form for several
        # contacts.
        keys, recipe, [ping], _ = readmeBlocks()
        lab = stack.enter_context(
            Lab(natA="port-restricted-cone", natB="port-restricted-cone", alternateAddress=True)
        )
        # wireguard-go keeps its control socket in /var/run/wireguard,
        # which every namespace shares: each interface needs a name of its
        # own.  A socket left behind by a killed wireguard-go is removed,
        # after the processes are stopped.
        interfaces = {
            host: f"pw{os.getpid() % 100000}{host[-1].lower()}" for host in TUNNEL_ADDRESSES
        }
        for interface in interfaces.values():
            stack.callback(self.removeControlSocket, interface)
        processes = stack.enter_context(Processes())
        self.run = run = Run(lab, processes)
        run.startServer()
        sides = {"peerA": ("alice", recipe), "peerB": ("bob", [forBob(c) for c in recipe])}
        homes = {}
        for host in sides:
            homes[host] = home = Path(self.mktemp())
            home.mkdir()
            self.shell(lab, host, home, "\n".join(keys))
        # Each gives its public key to the other side, as NAME.pub.
        for host, other in (("peerA", "peerB"), ("peerB", "peerA")):
            public = (homes[host] / "wg.pub").read_bytes()
            (homes[other] / f"{sides[host][0]}.pub").write_bytes(public)
        peers = {}
        for host, (_, commands) in sides.items():
            for command in commands:
                command = re.sub(r"\bwg0\b", interfaces[host], command)
                words = shlex.split(command, comments=True)
                if words[0] == "twistd":
                    peers[host] = self.punchPeer(words)
                elif words[0] == "wireguard-go":
                    self.startWireGuard(lab, processes, host, words)
                else:
                    self.shell(lab, host, homes[host], command)
        run.processes.start("alice", lab.command("peerA", peers["peerA"]))
        self.expect({("alice", re.compile("Waiting for bob"))}, 30, "alice did not register")
        start = time.monotonic()
        run.processes.start("bob", lab.command("peerB", peers["peerB"]))
        # A WireGuard handshake sent before the path is up is dropped, and
        # WireGuard sends the next only 5 s later: ping once it is up, as
        # README.rst says.
        self.expect(
            {
                ("alice", re.compile("Forwarding to bob")),
                ("bob", re.compile("Forwarding to alice")),
            },
            20,
            "alice and bob did not connect",
        )
        pathUp = time.monotonic() - start
        ping = shlex.split(ping)
        ping[1:1] = ["-c", "1", "-W", "1"]
        deadline = time.monotonic() + 20
        while True:
            result = lab.run("peerA", ping, timeout=5)
            if result.returncode == 0:
                return run, pathUp, time.monotonic() - start
            if time.monotonic() > deadline:
                self.fail("no ping crossed the tunnel:\n" + result.stdout + self.transcript())

    def shell(self, lab, host, home, script):
        """
        Run C{script} with C{sh} in C{host}, in the directory C{home}, and
        fail unless it succeeds.
        """
        result = lab.run(host, ["sh", "-e", "-c", script], timeout=10, cwd=home)
        self.assertEqual(result.returncode, 0, f"{script}: {result.stderr}")

    def punchPeer(self, words):
        """
        The C{twistd} command of README.rst as it runs in the lab: this
        Python's C{twistd}, no pid file, and the lab's stage manager.
        """
        words = twistdCommand() + ["--pidfile="] + words[1:]
        words[words.index("--server") + 1] = f"{self.run.lab.serverAddress}:{SERVER_PORT}"
        return words

    @staticmethod
    def removeControlSocket(interface):
        try:
            os.unlink(f"/var/run/wireguard/{interface}.sock")
        except FileNotFoundError:
            pass

    def startWireGuard(self, lab, processes, host, words):
        """
        Start wireguard-go in C{host} as C{words} says, in the foreground,
        so that it is stopped by its pid, and wait for its control socket.
        """
        interface = words[-1]
        control = f"/var/run/wireguard/{interface}.sock"
        processes.start(
            f"wg-{host}", lab.command(host, ["env", "WG_PROCESS_FOREGROUND=1", *words])
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(control):
            if time.monotonic() > deadline:
                self.fail(f"wireguard-go made no {control}:\n" + self.transcript())
            time.sleep(0.05)

    def expect(self, patterns, seconds, why):
        """
        Wait for every C{(label, pattern)} to match a line, or fail saying
        C{why}.
        """
        seen = self.run.waitFor(patterns, seconds)
        if len(seen) != len(patterns):
            self.fail(why + ":\n" + self.transcript())

    def transcript(self):
        """
        What every process printed so far.
        """
        self.run.lines += list(self.run.processes.lines(time.monotonic() + 0.5))
        return "\n" + self.run.transcript()

    def iperf3(self, lab, argv):
        """
        Run the iperf3 client in peerA against the server in peerB.

        @return: Its JSON report, decoded.
        """
        result = lab.run(
            "peerA",
            ["iperf3", "-c", TUNNEL_ADDRESSES["peerB"], "-p", str(IPERF_PORT),
             "-t", str(SECONDS), "-J", *argv],
            timeout=SECONDS + 30,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr + self.transcript())
        return json.loads(result.stdout)

    def receiveBufferErrors(self, lab, host):
        """
        How many UDP datagrams the kernel of C{host}'s namespace dropped for
        want of room in a socket's receive buffer, so far.
        """
        return lab.udpCounters(host)["RcvbufErrors"]

    def startIperfServer(self, lab, processes):
        """
        Start the iperf3 server in peerB, on every address.
        """
        processes.start(
            "iperf3", lab.command("peerB", ["iperf3", "-s", "--forceflush", "-p", str(IPERF_PORT)])
        )
        self.expect({("iperf3", re.compile("Server listening"))}, 10, "iperf3 -s did not start")

    def assertCleanLogs(self):
        """
        Stop the peers and the stage manager, check that none of them
        logged a traceback, and print what each forwarder counted.
        """
        for label in ("alice", "bob", "carol", "dave", "server"):
            if label in self.run.processes.children:
                self.run.processes.stop(label)
        transcript = self.transcript()
        self.assertNotIn("Traceback", transcript, transcript)
        for label, line in self.run.lines:
            counts = re.search(r"Forwarded .*", line)
            if counts:
                print(f"\n{label}: {counts.group(0)}", end="")

    def test_pingAndTCP(self):
        """
        A ping crosses the WireGuard tunnel soon after the second peer
        starts, and iperf3 (TCP) runs through it.
        """
        with ExitStack() as stack:
            run, pathUp, firstPing = self.tunnel(stack)
            lab, processes = run.lab, run.processes
            self.startIperfServer(lab, processes)
            report = self.iperf3(lab, [])
            self.assertCleanLogs()
        received = report["end"]["sum_received"]
        throughput = received["bits_per_second"] / 1e6
        print(
            f"\npaths up {pathUp * 1000:.0f} ms and first ping across WireGuard"
            f" {firstPing * 1000:.0f} ms after the second peer started;"
            f" iperf3 TCP through it: {throughput:.1f} Mbit/s"
            f" ({received['bytes']} bytes in {received['seconds']:.1f} s)"
        )
        self.assertLess(firstPing - pathUp, 3)
        self.assertGreater(throughput, 1)

    def test_udpThroughForwarders(self):
        """
        iperf3 -u's datagrams go straight through a second pair of
        forwarding peers, without WireGuard, at several rates; at the
        lowest nearly none is lost.

        iperf3's control connection is TCP, which goes through the
        WireGuard tunnel; its datagrams, sent to the same address and
        port, are redirected in peerA to the forwarding port of carol,
        whose contact dave delivers them to the iperf3 server.
        """
        with ExitStack() as stack:
            run, _, _ = self.tunnel(stack)
            lab, processes = run.lab, run.processes
            run.startPeer("carol", "peerA", "carol", "dave", ["--forward", str(UDP_FORWARD_PORT)])
            self.expect({("carol", re.compile("Waiting for dave"))}, 30, "carol did not register")
            run.startPeer(
                "dave", "peerB", "dave", "carol",
                ["--forward", str(UDP_FORWARD_PORT), "--deliver", f"127.0.0.1:{IPERF_PORT}"],
            )
            self.expect(
                {("carol", re.compile("Forwarding to dave")),
                 ("dave", re.compile("Forwarding to carol"))},
                20,
                "carol and dave did not connect",
            )
            redirect = lab.run(
                "peerA",
                ["nft", "-f", "-"],
                input=(
                    "table ip iperf {\n chain output {\n"
                    "  type nat hook output priority -100; policy accept;\n"
                    f"  ip daddr {TUNNEL_ADDRESSES['peerB']} udp dport {IPERF_PORT}"
                    f" dnat to 127.0.0.1:{UDP_FORWARD_PORT}\n }}\n}}\n"
                ),
                timeout=10,
            )
            self.assertEqual(redirect.returncode, 0, redirect.stderr)
            self.startIperfServer(lab, processes)
            losses = {}
            for rate in UDP_RATES_MBITS:
                before = {host: self.receiveBufferErrors(lab, host) for host in TUNNEL_ADDRESSES}
                report = self.iperf3(lab, ["-u", "-b", f"{rate}M", "-l", str(UDP_LENGTH)])
                total = report["end"]["sum"]
                full = {
                    host: self.receiveBufferErrors(lab, host) - before[host]
                    for host in TUNNEL_ADDRESSES
                }
                losses[rate] = (total["lost_percent"], total["packets"], full)
            self.assertCleanLogs()
        print(
            f"\niperf3 -u through the forwarders, {UDP_LENGTH}-byte datagrams for {SECONDS} s: "
            + "; ".join(
                f"{rate} Mbit/s {lost:.2f}% lost of {packets}"
                f" ({full['peerA']} and {full['peerB']} dropped by full receive buffers"
                " in peerA and peerB)"
                for rate, (lost, packets, full) in losses.items()
            )
        )
        for rate, (_, packets, _) in losses.items():
            self.assertGreater(packets, 0, f"no datagram sent at {rate} Mbit/s")
        self.assertLess(losses[UDP_RATES_MBITS[0]][0], 1.0)
