"""
Self-checks of the NAT lab (tests/natlab.py): the NAT types behave as
configured, hole punching works where it should and fails where it must,
delay and loss are there, and nothing is left behind.

Needs root, iproute2 and nftables; skipped otherwise, except under CI=true
where being unable to build a lab is a failure.
"""

import os
import select
import signal
import subprocess
import sys
import time
import unittest

from twisted.trial.unittest import TestCase

from punchd.test.optional import require
from tests import natlab

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A hole punch with two plain UDP sockets, of the server's family.  argv:
# server ip, server port, name.  Learns its public mapping from the reflector, prints it, reads the
# peer's "PEER ip port" from stdin, then sends every 50 ms for at most 3 s,
# answering whatever source the peer's packets come from.  Success means
# both directions worked (the peer confirmed it got our packets).
PUNCH_SCRIPT = r"""
import select, socket, sys, time
server = (sys.argv[1], int(sys.argv[2]))
name = sys.argv[3]
ipv6 = ":" in server[0]
s = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("::" if ipv6 else "0.0.0.0", 0))
mapped = None
deadline = time.monotonic() + 3
while mapped is None and time.monotonic() < deadline:
    s.sendto(b"WHO punch", server)
    if select.select([s], [], [], 0.1)[0]:
        data, source = s.recvfrom(2048)
        if data.startswith(b"SEEN "):
            parts = data.split()
            mapped = (parts[1].decode(), int(parts[2]))
if mapped is None:
    print("RESULT fail nomapping", flush=True)
    sys.exit(1)
print("MAPPED %s %d" % mapped, flush=True)
words = sys.stdin.readline().split()
targets = [(words[1], int(words[2]))]
got = confirmed = False
sent = extra = 0
nextSend = 0.0
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    now = time.monotonic()
    if now >= nextSend:
        for target in targets:
            s.sendto(("PUNCH %s %d" % (name, int(got))).encode(), target)
            sent += 1
        nextSend = now + 0.05
        if confirmed:
            extra += 1
            if extra > 4:
                break
    if select.select([s], [], [], max(0.0, nextSend - time.monotonic()))[0]:
        data, source = s.recvfrom(2048)
        source = source[:2]
        if data.startswith(b"PUNCH "):
            got = True
            if source not in targets:
                targets.append(source)
            if data.split()[2] == b"1":
                confirmed = True
print("RESULT %s sent=%d got=%s confirmed=%s" % (
    "ok" if got and confirmed else "fail", sent, got, confirmed), flush=True)
"""


def _requireLab(testCase):
    reason = natlab.labUnavailableReason()
    require(testCase, reason is None, "the NAT lab cannot run: %s" % (reason,))


def _labNamespaces():
    return [n for n in natlab.listNamespaces() if natlab.NAMESPACE_PATTERN.match(n)]


class _Lines:
    """
    Line reader with a timeout on a binary pipe (select() and buffered
    text readers do not mix).
    """

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""
        self.lines = []

    def readline(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if select.select([self.fd], [], [], remaining)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        line = line.decode("utf-8", "replace")
        self.lines.append(line)
        return line

    def waitFor(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            line = self.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                raise AssertionError(
                    "no %r line; got %r" % (prefix, "\n".join(self.lines))
                )
            if line.startswith(prefix):
                return line


class LabTestCase(TestCase):
    def setUp(self):
        _requireLab(self)

    def lab(self, **kwargs):
        lab = natlab.Lab(**kwargs)
        lab.start()
        self.addCleanup(lab.close)
        return lab


class NatTypeTests(LabTestCase):
    """
    The probe reports the configured mapping and filtering behaviour.
    """

    def checkType(self, natType):
        other = natlab.NAT_TYPES[(natlab.NAT_TYPES.index(natType) + 1) % 4]
        lab = self.lab(natA=natType, natB=other)
        expected = natlab.EXPECTED_BEHAVIOUR[natType]
        for nat, configured in (("natA", natType), ("natB", other)):
            found = lab.probeResults[nat]
            self.assertEqual(
                (found["mapping"], found["filtering"]),
                natlab.EXPECTED_BEHAVIOUR[configured],
                "%s: %r" % (nat, found),
            )
        again = lab.probe("peerA")
        self.assertEqual((again["mapping"], again["filtering"]), expected)
        self.assertEqual(again["public"], lab.natAPublic)
        if expected[0] == natlab.ENDPOINT_INDEPENDENT:
            # Linux keeps the inside port when it can.
            self.assertEqual({m[1] for m in again["observedMappings"]}, {again["localPort"]})

    def test_fullCone(self):
        self.checkType("full-cone")

    def test_restrictedCone(self):
        self.checkType("restricted-cone")

    def test_portRestrictedCone(self):
        self.checkType("port-restricted-cone")

    def test_symmetric(self):
        self.checkType("symmetric")

    def test_symmetricSequential(self):
        """
        A symmetric-sequential NAT maps per destination and filters by
        address and port like the symmetric one, but gives each new
        mapping the port after the last, where the symmetric one picks at
        random.
        """
        lab = self.lab(natA="symmetric-sequential", natB="symmetric")
        for nat, allocation in (("natA", natlab.SEQUENTIAL), ("natB", natlab.RANDOM)):
            found = lab.probeResults[nat]
            self.assertEqual(
                (found["mapping"], found["filtering"], found["allocation"]),
                (natlab.ADDRESS_AND_PORT_DEPENDENT, natlab.ADDRESS_AND_PORT_DEPENDENT, allocation),
                "%s: %r" % (nat, found),
            )
        again = lab.probe("peerA")
        self.assertEqual(again["allocation"], natlab.SEQUENTIAL)
        ports = [m[1] for m in again["observedMappings"]]
        self.assertEqual(ports, list(range(ports[0], ports[0] + 3)))
        self.assertIn(ports[0], natlab.SEQUENTIAL_PORTS)
        # Another inside socket, to another destination: the next port.
        inet = lab.agent("inet")
        reflector, _ = inet.bind(4000, lab.probeAddresses[1], reflect=True)
        inside = lab.agent("peerA")
        sock, _ = inside.bind()
        mapped, _ = inside.query(sock, lab.probeAddresses[1], 4000)
        self.assertEqual(mapped, (lab.natAPublic, ports[-1] + 1))

    def test_sameNatHairpin(self):
        """
        Both peers behind one NAT reach each other on the LAN; the public
        address loops back only with hairpinning, and then the receiver
        sees the sender's public address.
        """
        with natlab.Lab(sameNAT=True, hairpin=True) as lab:
            found = lab.probeResults["hairpin"]
            self.assertTrue(found["hairpin"])
            self.assertTrue(found["lan"])
            self.assertEqual({ip for ip, _ in found["hairpinSources"]}, {lab.natAPublic})
            self.assertEqual(lab.natBPublic, lab.natAPublic)
        with natlab.Lab(sameNAT=True, hairpin=False) as lab:
            found = lab.probeResults["hairpin"]
            self.assertFalse(found["hairpin"])
            self.assertTrue(found["lan"])


class HolePunchTests(LabTestCase):
    """
    Two plain UDP sockets punch through some NAT pairs and not others.
    """

    def punch(self, natA, natB, ipv6=None):
        """
        Punch between peerA and peerB, over IPv6 through firewalls when
        C{ipv6} is C{"firewall"}; return each one's RESULT line.
        """
        lab = self.lab(natA=natA, natB=natB, ipv6=ipv6, verify=ipv6 is None)
        server = lab.serverAddress6 if ipv6 else lab.serverAddress
        reflector = lab.agent("server")
        reflector.bind(3478, server, reflect=True)
        processes = {}
        readers = {}
        for host in ("peerA", "peerB"):
            processes[host] = lab.spawn(
                host,
                [sys.executable, "-c", PUNCH_SCRIPT, server, "3478", host],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
            )
            readers[host] = _Lines(processes[host].stdout)
        mapped = {h: r.waitFor("MAPPED", 5).split()[1:] for h, r in readers.items()}
        if ipv6:
            self.assertEqual(mapped["peerA"][0], lab.peerAAddress6)
            self.assertEqual(mapped["peerB"][0], lab.peerBAddress6)
        else:
            self.assertEqual(mapped["peerA"][0], lab.natAPublic)
            self.assertEqual(mapped["peerB"][0], lab.natBPublic)
        for host, other in (("peerA", "peerB"), ("peerB", "peerA")):
            processes[host].stdin.write(("PEER %s %s\n" % tuple(mapped[other])).encode())
        results = {}
        for host, process in processes.items():
            results[host] = readers[host].waitFor("RESULT", 10)
            process.wait(timeout=5)
        return results

    def test_portRestrictedBothSides(self):
        results = self.punch("port-restricted-cone", "port-restricted-cone")
        for host, result in results.items():
            self.assertTrue(result.startswith("RESULT ok"), "%s: %s" % (host, result))

    def test_fullConeAndSymmetric(self):
        results = self.punch("full-cone", "symmetric")
        for host, result in results.items():
            self.assertTrue(result.startswith("RESULT ok"), "%s: %s" % (host, result))

    def test_symmetricBothSides(self):
        results = self.punch("symmetric", "symmetric")
        for host, result in results.items():
            self.assertIn("got=False", result, "%s: %s" % (host, result))

    def test_portRestrictedAndSymmetric(self):
        results = self.punch("port-restricted-cone", "symmetric")
        for host, result in results.items():
            self.assertIn("got=False", result, "%s: %s" % (host, result))

    def test_portRestrictedAndSymmetricSequential(self):
        """
        With one socket each, a sequential NAT is as hard as a random one:
        its new port for the peer is not the one the reflector saw.
        """
        results = self.punch("port-restricted-cone", "symmetric-sequential")
        for host, result in results.items():
            self.assertIn("got=False", result, "%s: %s" % (host, result))

    def test_symmetricBothSidesOverIPv6(self):
        """
        Behind two symmetric IPv4 NATs, two plain sockets punch over IPv6
        through the stateful firewalls.
        """
        results = self.punch("symmetric", "symmetric", ipv6="firewall")
        for host, result in results.items():
            self.assertTrue(result.startswith("RESULT ok"), "%s: %s" % (host, result))


class IPv6Tests(LabTestCase):
    """
    With IPv6, each NAT router is a stateful IPv6 firewall, or drops IPv6.
    """

    def test_firewallReachesServer(self):
        """
        Through the firewalls both peers reach the server over IPv6, which
        sees their own addresses (there is no NAT66); IPv4 is unchanged.
        """
        lab = self.lab(natA="symmetric", natB="full-cone", ipv6="firewall")
        found = lab.probeResults["ipv6"]
        self.assertEqual(
            {key: value["mapped"][0] for key, value in found.items()},
            {"peerA->2001:db8:5::10": lab.peerAAddress6,
             "peerB->2001:db8:5::10": lab.peerBAddress6},
        )
        self.assertEqual(lab.probeResults["natA"]["mapping"], natlab.ADDRESS_AND_PORT_DEPENDENT)
        self.assertEqual(lab.probeResults["natB"]["filtering"], natlab.ENDPOINT_INDEPENDENT)

    def test_firewallFiltersByAddressAndPort(self):
        """
        Only the remote address and port that peerA contacted get through
        its firewall: the same remote's other port is dropped, and so is
        another outside host.
        """
        lab = self.lab(ipv6="firewall", verify=False)
        server = lab.agent("server")
        contacted, port = server.bind(4000, lab.serverAddress6, reflect=True)
        otherPort, _ = server.bind(4001, lab.serverAddress6)
        outsider = lab.agent("peerB")
        outside, _ = outsider.bind(address="::")
        inside = lab.agent("peerA")
        sock, localPort = inside.bind(address="::")
        mapped, _ = inside.query(sock, lab.serverAddress6, port)
        self.assertEqual(mapped, (lab.peerAAddress6, localPort))
        server.send(otherPort, lab.peerAAddress6, localPort, data="F-port", count=2)
        outsider.send(outside, lab.peerAAddress6, localPort, data="F-address", count=2)
        server.send(contacted, lab.peerAAddress6, localPort, data="F-control", count=2)
        got = {data for (_, _, data) in inside.recv(sock, wait=3.0, until="F-control", linger=0.1)}
        self.assertEqual(got, {"F-control"})

    def test_dropLetsNothingThrough(self):
        """
        Behind a router that drops IPv6, a host still has its address, a
        route and its router's answers to neighbour discovery, but nothing
        crosses the router either way.
        """
        lab = self.lab(ipv6="drop")
        self.assertEqual(
            [value["mapped"] for value in lab.probeResults["ipv6"].values()], [None, None]
        )
        route = lab.run("peerA", ["ip", "-6", "route", "get", lab.serverAddress6], check=True)
        self.assertIn("via 2001:db8:a::1", route.stdout)
        # verify() sent to the server through the router: it was found.
        neighbour = lab.run("peerA", ["ip", "-6", "neigh", "show", "2001:db8:a::1"], check=True)
        self.assertIn("lladdr", neighbour.stdout)
        server = lab.agent("server")
        sender, _ = server.bind(address="::")
        inside = lab.agent("peerA")
        sock, localPort = inside.bind(address="::")
        server.send(sender, lab.peerAAddress6, localPort, data="in", count=3)
        self.assertEqual(inside.recv(sock, wait=0.5), [])


class SentTests(LabTestCase):
    """
    The NAT routers count what their hosts send out, per destination.
    """

    def test_sentCountsDatagramsAndBytes(self):
        lab = self.lab()
        self.assertEqual(lab.sent("natA"), {})
        agent = lab.agent("peerA")
        sock, _ = agent.bind()
        agent.send(sock, lab.natBPublic, 7000, data="12345", count=7)
        agent.send(sock, lab.serverAddress, 7000, data="xy", count=3)
        self.assertEqual(
            lab.sent("natA"), {lab.natBPublic: (7, 35), lab.serverAddress: (3, 6)}
        )
        self.assertEqual(lab.sent("natB"), {})

    def test_sentCountsIPv6(self):
        """
        With IPv6 the NAT routers count IPv6 datagrams too, also those a
        router that drops IPv6 drops.
        """
        for mode in ("firewall", "drop"):
            lab = self.lab(ipv6=mode, verify=False)
            agent = lab.agent("peerA")
            sock, _ = agent.bind(address="::")
            agent.send(sock, lab.serverAddress6, 7000, data="12345", count=4)
            sock4, _ = agent.bind()
            agent.send(sock4, lab.natBPublic, 7000, data="xy", count=1)
            self.assertEqual(
                lab.sent("natA"),
                {lab.serverAddress6: (4, 20), lab.natBPublic: (1, 2)},
                mode,
            )


class ImpairmentTests(LabTestCase):
    """
    Delay and loss apply on the internet router.
    """

    def test_delay(self):
        """
        20 ms per link: peer -> server crosses two links each way, so the
        round trip takes at least 80 ms (and not much more).
        """
        lab = self.lab(delay=0.02)
        server = lab.agent("server")
        sock, port = server.bind(5000, lab.serverAddress, reflect=True)
        for host in ("peerA", "peerB"):
            agent = lab.agent(host)
            client, _ = agent.bind()
            rtts = agent.rtts(client, lab.serverAddress, port, count=8)
            self.assertNotIn(None, rtts)
            self.assertGreaterEqual(min(rtts), 0.078, rtts)
            self.assertLess(sorted(rtts)[len(rtts) // 2], 0.080 + 0.030, rtts)
        # The server check in verify() measured it too.
        self.assertGreaterEqual(lab.probeResults["server"]["peerA->192.0.2.10"]["rtt"], 0.078)

    def test_delayIPv6(self):
        """
        The delay applies to IPv6 too: 20 ms per link, a round trip from
        a peer to the server of at least 80 ms.
        """
        lab = self.lab(delay=0.02, ipv6="firewall", verify=False)
        server = lab.agent("server")
        sock, port = server.bind(5000, lab.serverAddress6, reflect=True)
        agent = lab.agent("peerB")
        client, _ = agent.bind(address="::")
        rtts = agent.rtts(client, lab.serverAddress6, port, count=5)
        self.assertNotIn(None, rtts)
        self.assertGreaterEqual(min(rtts), 0.078, rtts)
        self.assertLess(sorted(rtts)[len(rtts) // 2], 0.080 + 0.030, rtts)

    def test_noDelayByDefault(self):
        lab = self.lab()
        server = lab.agent("server")
        sock, port = server.bind(5000, lab.serverAddress, reflect=True)
        agent = lab.agent("peerA")
        client, _ = agent.bind()
        rtts = agent.rtts(client, lab.serverAddress, port, count=5)
        self.assertNotIn(None, rtts)
        self.assertLess(sorted(rtts)[2], 0.02, rtts)

    def test_loss(self):
        """
        20% loss: of 500 datagrams sent one way, 10-30% are lost.
        """
        lab = self.lab(loss=20)
        server = lab.agent("server")
        sock, port = server.bind(5000, lab.serverAddress)
        agent = lab.agent("peerA")
        client, _ = agent.bind()
        agent.send(client, lab.serverAddress, port, data="L", count=500, interval=0.001)
        received = len(server.recv(sock, wait=0.3))
        lost = 1 - received / 500.0
        self.assertTrue(0.10 <= lost <= 0.30, "lost %.1f%%" % (lost * 100))


class TeardownTests(LabTestCase):
    """
    Nothing is left behind: namespaces, interfaces, processes.
    """

    def test_secondServerTornDown(self):
        """
        A lab with a second server has a namespace more, C{server2}, at its
        own address; it goes with the lab, and the process in it.
        """
        with natlab.Lab(verify=False, secondServer=True) as lab:
            names = set(lab.namespaces.values())
            roles = set(natlab.HOSTS) | {"server2"}
            self.assertEqual(names, {"%s-%s" % (lab.prefix, role) for role in roles})
            out = lab.run("server2", ["ip", "-4", "addr", "show", "dev", "eth0"], timeout=5)
            self.assertIn(natlab.SECOND_SERVER_ADDRESS + "/", out.stdout)
            process = lab.spawn("server2", ["sleep", "60"])
        self.assertEqual(set(_labNamespaces()) & names, set())
        self.assertIsNotNone(process.poll())

    def test_teardownRemovesEverything(self):
        before = set(_labNamespaces())
        with natlab.Lab(verify=False) as lab:
            names = set(lab.namespaces.values())
            self.assertEqual(names, {"%s-%s" % (lab.prefix, role) for role in natlab.HOSTS})
            self.assertTrue(names <= set(_labNamespaces()))
            lab.spawn("peerA", ["sleep", "60"])
            # A grandchild in its own process group, found only through the
            # namespace.
            lab.spawn("server", ["sh", "-c", "setsid sleep 60 & sleep 60"])
            time.sleep(0.2)
            pids = []
            for ns in names:
                pids += natlab.namespacePids(ns)
            self.assertGreaterEqual(len(pids), 3)
        self.assertEqual(set(_labNamespaces()) & names, set())
        self.assertEqual(set(_labNamespaces()), before)
        deadline = time.monotonic() + 3
        alive = pids
        while alive and time.monotonic() < deadline:
            alive = [p for p in pids if _isRunning(p)]
            time.sleep(0.05)
        self.assertEqual(alive, [])
        # The veths lived only in the namespaces; none reached the root one.
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        for name in ("srv@", "nA@", "nB@", "wan@", "pA@", "pB@", "dly0"):
            self.assertNotIn(" %s" % name, links)

    def test_teardownOnException(self):
        names = []

        def broken():
            with natlab.Lab(verify=False, delay=0.01) as lab:
                names.extend(lab.namespaces.values())
                raise ZeroDivisionError()

        self.assertRaises(ZeroDivisionError, broken)
        self.assertTrue(names)
        self.assertEqual(set(_labNamespaces()) & set(names), set())

    def test_cleanupCommand(self):
        """
        ``cleanup`` removes lab namespaces of dead processes and keeps those
        of running labs.
        """
        dead = subprocess.Popen(["true"])
        dead.wait()
        stale = "pl%d-0-peerA" % dead.pid
        subprocess.run(["ip", "netns", "add", stale], check=True)
        self.addCleanup(subprocess.run, ["ip", "netns", "del", stale], capture_output=True)
        with natlab.Lab(verify=False) as lab:
            out = subprocess.run(
                [sys.executable, "-m", "tests.natlab", "cleanup"],
                cwd=_ROOT, capture_output=True, text=True, timeout=60,
            )
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("removed %s" % stale, out.stdout)
            remaining = set(_labNamespaces())
            self.assertNotIn(stale, remaining)
            ours = {"%s-%s" % (lab.prefix, role) for role in natlab.HOSTS}
            self.assertTrue(ours <= remaining)

    def test_commandLineUp(self):
        """
        ``up`` builds a lab, prints it, and tears it down on Ctrl-C.
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.natlab", "up", "--nat-a", "full-cone",
             "--nat-b", "symmetric", "--delay", "5"],
            cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        )
        try:
            reader = _Lines(process.stdout)
            reader.waitFor("Ctrl-C", 30)
            text = "\n".join(reader.lines)
            self.assertIn("verified natA: endpoint-independent mapping, endpoint-independent", text)
            self.assertIn("verified natB: address-and-port-dependent mapping", text)
            self.assertIn("ip netns exec pl%d-" % process.pid, text)
            names = [line.split()[-1] for line in reader.lines
                     if line.split() and natlab.NAMESPACE_PATTERN.match(line.split()[-1])]
            self.assertEqual(len(names), 6, text)
            self.assertTrue(set(names) <= set(_labNamespaces()))
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
            self.assertEqual(process.returncode, 0, process.stderr.read())
            self.assertEqual(set(names) & set(_labNamespaces()), set())
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    natlab.cleanup()
            process.stdout.close()
            process.stderr.close()


class AvailabilityTests(TestCase):
    def test_reasonWithoutRoot(self):
        """
        Without root, labUnavailableReason names the problem and the
        command line refuses clearly.
        """
        if os.geteuid() != 0:
            self.assertIn("root", natlab.labUnavailableReason())
            return

        def dropRoot():
            os.setgid(65534)
            os.setgroups([])
            os.setuid(65534)

        # The venv's interpreter may sit under /root; the module is stdlib
        # only, so any Python 3 will do.
        python = "/usr/bin/python3"
        if not os.access(python, os.X_OK):
            raise unittest.SkipTest("no system python3 to run as an unprivileged user")
        code = "from tests import natlab; print(natlab.labUnavailableReason())"
        out = subprocess.run(
            [python, "-c", code], cwd=_ROOT, capture_output=True, text=True,
            preexec_fn=dropRoot, timeout=30,
        )
        self.assertIn("needs root", out.stdout, out.stderr)
        out = subprocess.run(
            [python, "-m", "tests.natlab", "up"], cwd=_ROOT, capture_output=True,
            text=True, preexec_fn=dropRoot, timeout=30,
        )
        self.assertEqual(out.returncode, 2)
        self.assertIn("needs root", out.stderr)

    def test_reasonAsRoot(self):
        _requireLab(self)
        self.assertIsNone(natlab.labUnavailableReason())


def _isRunning(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
