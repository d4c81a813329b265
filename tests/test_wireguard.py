"""
System tests of C{punch-peer --forward} with real programs nobody here
wrote: WireGuard (Debian's C{wireguard-go} and C{wireguard-tools}) between
two hosts behind two port-restricted cone NATs of L{tests.natlab}, with
C{ping} and C{iperf3} through the tunnel, and C{iperf3 -u} straight
through the forwarders.

Each host runs, as in README.rst's "WireGuard through two NATs"::

    wireguard-go IFACE          # listening on 51820, peer at 127.0.0.1:51821
    twistd -n punch-peer ... --forward 51821 --deliver 127.0.0.1:51820

They need root and the tools.  Without them they skip, saying why; with
C{CI=true} a skip is a failure, so that CI cannot pass by skipping them.
Every process is stopped by pid, and the lab's namespaces removed, also
when a test fails.
"""

import json
import os
import re
import shutil
import subprocess
import time
from contextlib import ExitStack

from twisted.trial.unittest import SkipTest, TestCase

from punchd.demo import Processes
from punchd.messages import MAX_PAYLOAD_BYTES
from tests.natdemo import Run
from tests.natlab import Lab
from tests.test_natlab import requireLab

#: The Debian package of each program the tests run.
TOOLS = {
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
    "iperf3": "iperf3",
    "ping": "iputils-ping",
}

WIREGUARD_PORT = 51820
FORWARD_PORT = 51821
#: Each host's address inside the tunnel.
TUNNEL_ADDRESSES = {"peerA": "10.99.0.1", "peerB": "10.99.0.2"}
#: WireGuard's overhead on each datagram: a 16-byte header and a 16-byte
#: tag, the inner packet padded to a multiple of 16 bytes.
WIREGUARD_OVERHEAD = 32
#: The largest inner packet whose WireGuard datagram a path carries.
TUNNEL_MTU = min(1420, (MAX_PAYLOAD_BYTES - WIREGUARD_OVERHEAD) // 16 * 16)

IPERF_PORT = 5201
#: The forwarding port of the second pair of peers, which carries
#: C{iperf3 -u}'s datagrams.
UDP_FORWARD_PORT = 5202
#: iperf3's UDP datagram: as large as a path carries, within an Ethernet
#: frame.
UDP_LENGTH = min(1400, MAX_PAYLOAD_BYTES)
UDP_RATES_MBITS = (1, 10, 50)
SECONDS = 3


def requireTools():
    """
    Skip, or fail under C{CI=true}, unless every program in L{TOOLS} is
    installed.
    """
    missing = [f"{tool} (Debian package {package})" for tool, package in TOOLS.items()
               if shutil.which(tool) is None]
    if not missing:
        return
    message = "not installed: " + ", ".join(missing)
    if os.environ.get("CI") == "true":
        raise AssertionError(f"CI=true, but {message}")
    raise SkipTest(message)


def forwarding(deliver=None, port=FORWARD_PORT):
    """
    The punch-peer arguments that forward C{port}, delivering to
    C{deliver}.
    """
    extra = ["--forward", str(port)]
    if deliver is not None:
        extra += ["--deliver", deliver]
    return extra


class WireGuardTests(TestCase):
    """
    WireGuard through two port-restricted cone NATs over punchd.
    """

    def setUp(self):
        requireLab()
        requireTools()
        self.keys = self.mktemp()
        os.mkdir(self.keys, 0o700)

    def tunnel(self, stack):
        """
        Build the lab, start WireGuard on both peers' hosts, then alice's
        forwarding peer, then bob's once alice is registered, and ping
        across the tunnel until a ping comes back.

        @param stack: The L{ExitStack} that tears it all down.
        @return: The L{Run}, and the seconds from bob's start until both
            paths were up and until the first ping came back.
        """
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
        keys = {host: self.keyPair(host) for host in TUNNEL_ADDRESSES}
        for host, other in (("peerA", "peerB"), ("peerB", "peerA")):
            self.startWireGuard(
                lab, processes, host, interfaces[host], keys[host][0], keys[other][1], other
            )
        deliver = f"127.0.0.1:{WIREGUARD_PORT}"
        run.startPeer("alice", "peerA", "alice", "bob", forwarding(deliver))
        self.expect({("alice", re.compile("Waiting for bob"))}, 30, "alice did not register")
        start = time.monotonic()
        run.startPeer("bob", "peerB", "bob", "alice", forwarding(deliver))
        # A WireGuard handshake sent before the path is up is dropped, and
        # WireGuard sends the next only 5 s later: ping once it is up.
        self.expect(
            {
                ("alice", re.compile("Forwarding to bob")),
                ("bob", re.compile("Forwarding to alice")),
            },
            20,
            "alice and bob did not connect",
        )
        pathUp = time.monotonic() - start
        deadline = time.monotonic() + 20
        while True:
            ping = lab.run(
                "peerA", ["ping", "-c", "1", "-W", "1", TUNNEL_ADDRESSES["peerB"]], timeout=5
            )
            if ping.returncode == 0:
                return run, pathUp, time.monotonic() - start
            if time.monotonic() > deadline:
                self.fail("no ping crossed the tunnel:\n" + ping.stdout + self.transcript())

    def keyPair(self, host):
        """
        A WireGuard key pair for C{host}: the private key's file, and the
        public key.
        """
        private = subprocess.run(
            ["wg", "genkey"], capture_output=True, text=True, check=True, timeout=10
        ).stdout
        path = os.path.join(self.keys, host)
        with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
            f.write(private)
        public = subprocess.run(
            ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True,
            timeout=10,
        ).stdout.strip()
        return path, public

    @staticmethod
    def removeControlSocket(interface):
        try:
            os.unlink(f"/var/run/wireguard/{interface}.sock")
        except FileNotFoundError:
            pass

    def startWireGuard(self, lab, processes, host, interface, privateKey, peerKey, peerHost):
        """
        Start wireguard-go in C{host} on C{interface}, listening on
        L{WIREGUARD_PORT} with its peer's endpoint at the forwarding port,
        and bring the interface up.
        """
        control = f"/var/run/wireguard/{interface}.sock"
        processes.start(f"wg-{host}", lab.command(host, ["wireguard-go", "-f", interface]))
        deadline = time.monotonic() + 10
        while not os.path.exists(control):
            if time.monotonic() > deadline:
                self.fail(f"wireguard-go made no {control}:\n" + self.transcript())
            time.sleep(0.05)
        commands = [
            ["wg", "set", interface, "private-key", privateKey,
             "listen-port", str(WIREGUARD_PORT),
             "peer", peerKey, "endpoint", f"127.0.0.1:{FORWARD_PORT}",
             "allowed-ips", TUNNEL_ADDRESSES[peerHost] + "/32"],
            ["ip", "address", "add", TUNNEL_ADDRESSES[host] + "/24", "dev", interface],
            ["ip", "link", "set", interface, "mtu", str(TUNNEL_MTU), "up"],
        ]
        for argv in commands:
            result = lab.run(host, argv, timeout=10)
            self.assertEqual(result.returncode, 0, f"{argv}: {result.stderr}")

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
            f" ({received['bytes']} bytes in {received['seconds']:.1f} s, MTU {TUNNEL_MTU})"
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
            run.startPeer(
                "carol", "peerA", "carol", "dave",
                forwarding(port=UDP_FORWARD_PORT),
            )
            self.expect({("carol", re.compile("Waiting for dave"))}, 30, "carol did not register")
            run.startPeer(
                "dave", "peerB", "dave", "carol",
                forwarding(f"127.0.0.1:{IPERF_PORT}", port=UDP_FORWARD_PORT),
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
                report = self.iperf3(lab, ["-u", "-b", f"{rate}M", "-l", str(UDP_LENGTH)])
                total = report["end"]["sum"]
                losses[rate] = (total["lost_percent"], total["packets"])
            self.assertCleanLogs()
        print(
            f"\niperf3 -u through the forwarders, {UDP_LENGTH}-byte datagrams for {SECONDS} s: "
            + "; ".join(
                f"{rate} Mbit/s {lost:.2f}% lost of {packets}"
                for rate, (lost, packets) in losses.items()
            )
        )
        for rate, (_, packets) in losses.items():
            self.assertGreater(packets, 0, f"no datagram sent at {rate} Mbit/s")
        self.assertLess(losses[UDP_RATES_MBITS[0]][0], 1.0)
