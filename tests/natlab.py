"""
natlab: a throw-away NAT laboratory built from Linux network namespaces.

The lab is for punchd's system tests: it builds a tiny "internet" with a
rendezvous-server host and two peers behind NAT routers whose behaviour is
configured with nftables and *checked by a probe* before the lab is handed
out.  Everything is stdlib Python driving ``ip``, ``nft`` and ``sysctl``;
root is required (Debian packages: ``iproute2``, ``nftables``, ``procps``).

Topology (two NATs)::

  peerA 10.0.1.2 --[lan 10.0.1.1 | natA | wan 198.51.100.1]--+
                                                              |
  server 192.0.2.10 (+ .11) -------------------------[ inet router ]
                                                              |
  peerB 10.0.2.2 --[lan 10.0.2.1 | natB | wan 203.0.113.1]---+

With ``sameNAT=True`` there is no natB: peerB is 10.0.1.3 on natA's LAN.
With ``secondServer=True`` a second server host, ``server2`` at
192.0.2.130 (a subnet of its own on the inet router), stands beside the
first, for tests of several stage managers.
The inet router also owns two probe addresses (192.0.2.201, 192.0.2.202)
used only by L{Lab.verify}; traffic to them is neither delayed nor lost.

All addresses exist only inside the lab's namespaces.  Namespaces are named
``pl<pid>-<n>-<role>`` (roles: inet, server, natA, natB, peerA, peerB); the
veth pairs are created directly inside them, so nothing is ever added to
the root namespace and deleting the namespaces removes every interface.

NAT types (per router, see L{ALL_NAT_TYPES}, L{EXPECTED_BEHAVIOUR} and
L{PORT_ALLOCATION}):

  - full-cone: endpoint-independent mapping and filtering;
  - restricted-cone: endpoint-independent mapping, address-dependent
    filtering;
  - port-restricted-cone: endpoint-independent mapping, address-and-port
    dependent filtering (Linux masquerade);
  - symmetric: address-and-port dependent mapping (``masquerade
    fully-random``) and filtering;
  - symmetric-sequential (in L{OTHER_NAT_TYPES}, not in the pair matrix):
    the same behaviour, but each new mapping takes the next public port
    (``snat to PUBLIC : numgen inc mod N map {...}``; nftables runs a NAT
    rule only on a flow's first packet), as many carrier and corporate NATs
    do.

Cone mappings are kept in nftables dynamic maps filled from the packet path
after SNAT (public port -> inside endpoint, inside endpoint -> public port,
and for restricted cones the set of (public port, remote address) pairs
contacted); new inbound UDP flows are DNATed by looking the map up.  The
routers drop unsolicited inbound UDP silently (an ICMP answer would leave a
conntrack entry that makes Linux move the inside host's later flow to
another port).  Hairpinning, when enabled, translates both ends (the
receiver sees the sender's public mapping) and does not filter.

IPv6 (``Lab(ipv6="firewall")`` or ``"drop"``, off by default): every host
also gets a global address in 2001:db8::/32, with no NAT66::

  peerA 2001:db8:a::2 --[natA wan 2001:db8:ff:a::1]--+
  server 2001:db8:5::10 ------------------------[ inet router ]
  peerB 2001:db8:b::2 --[natB wan 2001:db8:ff:b::1]--+

With "firewall" each NAT router forwards IPv6 through a stateful firewall
(L{firewallRuleset6}: outbound allowed, inbound only for established
flows, that is address-and-port-dependent filtering); with "drop" it
forwards none, while the hosts keep their addresses and routes (a family
that looks usable but is broken).  Delay and loss apply to IPv6 as well.

Delay (one-way, per link) is made by a userspace delay line on a TUN device
in the inet router (see tests/delayer.py): each forwarded packet crosses two
lab links there, so it is held ``2 * delay``.  Loss is an nftables
``numgen random`` drop, applied once per packet crossing the inet router.

Python use::

    from tests.natlab import Lab, labUnavailableReason
    with Lab(natA="full-cone", natB="symmetric", delay=0.02) as lab:
        server = lab.spawn("server", ["punch-server", ...])
        out = lab.run("peerA", ["ip", "addr"], timeout=5)

Command line: ``python -m tests.natlab --help`` (subcommands up, check,
cleanup).
"""

import argparse
import atexit
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

#: The NAT types of the pair matrix (tests/test_natlab.py).
NAT_TYPES = ("full-cone", "restricted-cone", "port-restricted-cone", "symmetric")

#: NAT types the lab builds beyond L{NAT_TYPES}, tested on their own.
OTHER_NAT_TYPES = ("symmetric-sequential",)

#: Every NAT type the lab builds.
ALL_NAT_TYPES = NAT_TYPES + OTHER_NAT_TYPES

ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

#: NAT type -> (mapping behaviour, filtering behaviour), RFC 4787 terms.
EXPECTED_BEHAVIOUR = {
    "full-cone": (ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT),
    "restricted-cone": (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT),
    "port-restricted-cone": (ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
    "symmetric": (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
    "symmetric-sequential": (ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
}

RANDOM = "random"
SEQUENTIAL = "sequential"

#: NAT type -> how it picks the public port of each new mapping, for the
#: types that map per destination.
PORT_ALLOCATION = {
    "symmetric": RANDOM,
    "symmetric-sequential": SEQUENTIAL,
}

#: The public ports a sequential NAT allocates, in turn (then again from
#: the first).
SEQUENTIAL_PORTS = range(20000, 24096)

HOSTS = ("server", "peerA", "peerB", "natA", "natB", "inet")

NAMESPACE_PREFIX = "pl"
#: The name of a lab's namespace: C{pl<pid>-<n>-<role>}.
NAMESPACE_PATTERN = re.compile(
    r"^pl(?P<pid>\d+)-(?P<seq>\d+)-(?P<role>inet|server2?|natA|natB|peerA|peerB|chk)$"
)

# Addressing plan (documentation ranges and private LANs, only ever used
# inside the lab's own namespaces).
SERVER_ADDRESS = "192.0.2.10"
SERVER_ALTERNATE_ADDRESS = "192.0.2.11"
_INET_SERVER_SIDE = "192.0.2.1"
_SERVER_PREFIXLEN = 25
PROBE_ADDRESSES = ("192.0.2.201", "192.0.2.202")
SECOND_SERVER_ADDRESS = "192.0.2.130"
_INET_SECOND_SERVER_SIDE = "192.0.2.129"
_SECOND_SERVER_PREFIXLEN = 26
NAT_A_PUBLIC = "198.51.100.1"
_INET_A_SIDE = "198.51.100.254"
NAT_B_PUBLIC = "203.0.113.1"
_INET_B_SIDE = "203.0.113.254"
_LAN_A = ("10.0.1.0/24", "10.0.1.1")
_LAN_B = ("10.0.2.0/24", "10.0.2.1")
PEER_A_ADDRESS = "10.0.1.2"
PEER_B_ADDRESS = "10.0.2.2"
PEER_B_SAME_NAT_ADDRESS = "10.0.1.3"

#: The IPv6 modes of a lab (L{Lab}'s C{ipv6}): none, a stateful firewall
#: in each NAT router, or every forwarded IPv6 packet dropped there.
IPV6_MODES = (None, "firewall", "drop")

# IPv6 addressing plan, from documentation space 2001:db8::/32: one /64
# per LAN and for the server, and one /64 per internet link, in
# 2001:db8:ff::/48.  No NAT66: the hosts' addresses are global.
SERVER_ADDRESS6 = "2001:db8:5::10"
_INET_SERVER_SIDE6 = "2001:db8:5::1"
_LAN_A6 = ("2001:db8:a::/64", "2001:db8:a::1")
_LAN_B6 = ("2001:db8:b::/64", "2001:db8:b::1")
PEER_A_ADDRESS6 = "2001:db8:a::2"
PEER_B_ADDRESS6 = "2001:db8:b::2"
PEER_B_SAME_NAT_ADDRESS6 = "2001:db8:a::3"
#: NAT router -> (its WAN address, the inet router's address on that link).
_WAN6 = {
    "natA": ("2001:db8:ff:a::1", "2001:db8:ff:a::fe"),
    "natB": ("2001:db8:ff:b::1", "2001:db8:ff:b::fe"),
}

#: The server host's name in every lab namespace: its IPv4 address, and its
#: IPv6 one in a lab with IPv6 (an A and an AAAA record, as a dual-stack
#: stage manager's name has).  C{ip netns exec} reads it from
#: C{/etc/netns/<namespace>/hosts}, which the lab writes and removes.
SERVER_NAME = "stage.lab"
_NETNS_ETC = "/etc/netns"

_DELAY_TUN = "dly0"
_DELAY_TABLE = "100"
_PROBE_PORTS = (3478, 3479)
_SERVER_PROBE_PORT = 31478

_HERE = os.path.dirname(os.path.abspath(__file__))
_THIS_FILE = os.path.abspath(__file__)
_DELAYER = os.path.join(_HERE, "delayer.py")


class NatLabError(RuntimeError):
    """
    The lab could not be built, torn down, or does not behave as configured.
    """


def _sh(argv, input=None, check=True, timeout=30):
    """
    Run a command (not inside any namespace), returning CompletedProcess;
    raise L{NatLabError} with its stderr when it fails and C{check} is set.
    """
    try:
        result = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        if check:
            raise NatLabError("command %r failed: %s" % (argv, e)) from None
        return subprocess.CompletedProcess(argv, 255, "", str(e))
    if check and result.returncode != 0:
        raise NatLabError(
            "command %r failed (exit %d): %s"
            % (argv, result.returncode, (result.stderr or result.stdout).strip())
        )
    return result


def listNamespaces():
    """
    Names of all named network namespaces (``ip netns list``).
    """
    result = _sh(["ip", "netns", "list"], check=False)
    names = []
    for line in result.stdout.splitlines():
        if line.strip():
            names.append(line.split()[0])
    return names


def namespacePids(ns):
    """
    The pids of the processes in the network namespace C{ns}.
    """
    result = _sh(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _pidAlive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_unavailableCache = []
_seqLock = threading.Lock()
_seq = itertools.count()


def _newPrefix():
    """
    A fresh ``pl<pid>-<n>`` prefix whose names are not in use.
    """
    existing = set(listNamespaces())
    with _seqLock:
        while True:
            prefix = "%s%d-%d" % (NAMESPACE_PREFIX, os.getpid(), next(_seq))
            if not any(name.startswith(prefix + "-") for name in existing):
                return prefix


def labUnavailableReason():
    """
    Return C{None} when a lab can be built here (root, ``ip``, ``nft`` and
    ``sysctl`` present, network namespaces, veth pairs and nftables NAT
    work), else a short human-readable reason.  The result is cached.
    """
    if _unavailableCache:
        return _unavailableCache[0]
    reason = _computeUnavailableReason()
    _unavailableCache.append(reason)
    return reason


def _computeUnavailableReason():
    if not sys.platform.startswith("linux"):
        return "natlab needs Linux network namespaces (platform is %s)" % (
            sys.platform,
        )
    if os.geteuid() != 0:
        return "natlab needs root (to create network namespaces); euid is %d" % (
            os.geteuid(),
        )
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("sysctl", "procps")):
        if shutil.which(tool) is None:
            return "natlab needs the %r command (apt-get install %s)" % (tool, package)
    name = _newPrefix() + "-chk"
    created = _sh(["ip", "netns", "add", name], check=False)
    if created.returncode != 0:
        return "cannot create a network namespace: %s" % created.stderr.strip()
    try:
        r = _sh(
            ["ip", "-n", name, "link", "add", "name", "va", "type", "veth", "peer", "name", "vb"],
            check=False,
        )
        if r.returncode != 0:
            return "cannot create a veth pair: %s" % r.stderr.strip()
        r = _sh(
            ["ip", "netns", "exec", name, "nft", "-f", "-"],
            input=(
                "table ip t {\n chain p {\n type nat hook postrouting priority srcnat;"
                " policy accept;\n masquerade fully-random\n }\n}\n"
            ),
            check=False,
        )
        if r.returncode != 0:
            return "nftables NAT does not work: %s" % r.stderr.strip()
    finally:
        _sh(["ip", "netns", "del", name], check=False)
    return None


class Agent:
    """
    Client for a tiny UDP test agent running inside one lab host (spawned
    with L{Lab.agent}).  It speaks JSON lines over the agent's stdin/stdout.
    Sockets are referred to by small integers returned by L{bind}.

    Reflector sockets answer ``WHO <nonce>`` with ``SEEN <ip> <port>
    <nonce>``: the source address they observed (a STUN-like mapping probe).
    """

    def __init__(self, lab, host):
        self.host = host
        self.proc = lab.spawn(
            host,
            [sys.executable, _THIS_FILE, "_agent"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._buffer = b""

    def call(self, op, timeout=10.0, **args):
        """
        Send one request and return the decoded answer (a dict); raise
        L{NatLabError} if the agent reports an error, dies or is too slow.
        """
        request = dict(args, op=op)
        try:
            self.proc.stdin.write(json.dumps(request).encode("utf-8") + b"\n")
        except (BrokenPipeError, ValueError):
            raise NatLabError("agent in %s is gone" % (self.host,)) from None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NatLabError("agent in %s did not answer %r" % (self.host, request))
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise NatLabError("agent in %s died" % (self.host,))
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        answer = json.loads(line)
        if not answer.get("ok"):
            raise NatLabError(
                "agent in %s: %s (request %r)" % (self.host, answer.get("error"), request)
            )
        return answer

    def bind(self, port=0, address="0.0.0.0", reflect=False):
        """
        Open a UDP socket, IPv6 when C{address} is an IPv6 one (C{"::"}
        for any); return C{(socketId, boundPort)}.
        """
        answer = self.call("bind", address=address, port=port, reflect=reflect)
        return answer["sock"], answer["port"]

    def send(self, sock, host, port, data="x", count=1, interval=0.0):
        """
        Send C{data} C{count} times, C{interval} seconds apart.
        """
        return self.call(
            "send",
            timeout=10.0 + count * interval,
            sock=sock,
            host=host,
            port=port,
            data=data,
            count=count,
            interval=interval,
        )["sent"]

    def query(self, sock, host, port, timeout=2.0, interval=0.1):
        """
        Ask the reflector at C{(host, port)} which source it sees; retry
        every C{interval} seconds up to C{timeout}.  Return
        C{((ip, port), rtt)} or C{(None, None)}.
        """
        answer = self.call(
            "query",
            timeout=timeout + 10.0,
            sock=sock,
            host=host,
            port=port,
            wait=timeout,
            interval=interval,
        )
        if answer["mapped"] is None:
            return None, None
        return tuple(answer["mapped"]), answer["rtt"]

    def rtts(self, sock, host, port, count=10, timeout=1.0):
        """
        C{count} sequential reflector round trips; a list of seconds (None
        for a query that got no answer within C{timeout}).
        """
        return self.call(
            "rtts",
            timeout=count * timeout + 10.0,
            sock=sock,
            host=host,
            port=port,
            count=count,
            wait=timeout,
        )["rtts"]

    def recv(self, sock, wait=0.3, until=None, linger=0.0):
        """
        Wait C{wait} seconds (or, with C{until}, only until a datagram whose
        data is C{until} arrives, then C{linger} seconds more), then return
        all datagrams received on C{sock} since the last call (except
        reflector traffic) as a list of C{(ip, port, data)}.
        """
        args = {"until": until, "linger": linger} if until is not None else {}
        answer = self.call("recv", timeout=wait + linger + 10.0, sock=sock, wait=wait, **args)
        return [tuple(p) for p in answer["packets"]]

    def closeSocket(self, sock):
        self.call("close", sock=sock)

    def close(self):
        """
        Stop the agent process.
        """
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=2.0)
            except NatLabError:
                pass
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _classifyAllocation(ports):
    """
    How a NAT that maps per destination chose C{ports}, the public ports
    of mappings made one after the other: L{SEQUENTIAL} when each is the
    one after the last, else L{RANDOM}.
    """
    if all(b - a == 1 for a, b in zip(ports, ports[1:])):
        return SEQUENTIAL
    return RANDOM


def _classifyMapping(first, samePortOtherDestPort, otherAddress):
    if first == samePortOtherDestPort == otherAddress:
        return ENDPOINT_INDEPENDENT
    if first == samePortOtherDestPort:
        return ADDRESS_DEPENDENT
    return ADDRESS_AND_PORT_DEPENDENT


class Lab:
    """
    A NAT lab made of network namespaces.  Use it as a context manager:
    C{__enter__} builds it and (unless C{verify=False}) runs L{verify};
    C{__exit__} always tears everything down (processes, namespaces and
    with them every interface), also on exceptions and KeyboardInterrupt.

    @ivar serverAddress: the server host's address ("192.0.2.10").
    @ivar serverAlternateAddress: its second address ("192.0.2.11") when
        C{alternateAddress} was requested, else C{None}.
    @ivar secondServerAddress: the second server host's address
        ("192.0.2.130") when C{secondServer} was requested, else C{None}.
    @ivar natAPublic: natA's public address.
    @ivar natBPublic: natB's public address (natA's when C{sameNAT}).
    @ivar peerAAddress: peerA's private address.
    @ivar peerBAddress: peerB's private address.
    @ivar namespaces: dict host -> namespace name for the hosts that exist
        (server, peerA, peerB, natA, natB unless sameNAT, inet).
    @ivar probeResults: what L{verify} found (dict), once it ran.
    @ivar ipv6: the IPv6 mode, one of L{IPV6_MODES}.
    @ivar serverAddress6: the server host's IPv6 address, or C{None}
        without IPv6; likewise C{peerAAddress6} and C{peerBAddress6}.
    """

    def __init__(
        self,
        natA="port-restricted-cone",
        natB="port-restricted-cone",
        sameNAT=False,
        hairpin=False,
        delay=0.0,
        loss=0.0,
        alternateAddress=False,
        verify=True,
        log=None,
        secondServer=False,
        ipv6=None,
    ):
        """
        @param natA: NAT type of natA (one of L{ALL_NAT_TYPES}).
        @param natB: NAT type of natB (ignored when C{sameNAT}).
        @param sameNAT: put both peers on natA's LAN.
        @param hairpin: the NAT router(s) hairpin (loop back) traffic from
            the LAN to their own public address.
        @param delay: one-way delay in seconds added on each link to the
            inet router (so peer->server takes 2*delay, RTT 4*delay).
        @param loss: percentage of packets dropped at the inet router (each
            crossing, so a round trip through it is lost with probability
            about 1-(1-loss/100)**2).
        @param alternateAddress: give the server a second address.
        @param verify: run L{verify} on enter.
        @param log: callable taking a string, for progress messages.
        @param secondServer: add a second server host, C{server2}, with a
            public address of its own on the lab's internet.
        @param ipv6: C{None} for an IPv4-only lab; C{"firewall"} to give
            every host a global IPv6 address, with each NAT router
            forwarding IPv6 through a stateful firewall (outbound allowed,
            inbound only for established flows: address-and-port-dependent
            filtering, no NAT66); C{"drop"} for the same addresses and
            routes, but NAT routers that drop every forwarded IPv6 packet
            (a broken family).
        """
        for label, value in (("natA", natA), ("natB", natB)):
            if value not in ALL_NAT_TYPES:
                raise ValueError("%s must be one of %s, not %r" % (label, ALL_NAT_TYPES, value))
        if not 0 <= float(delay) <= 10:
            raise ValueError("delay must be between 0 and 10 seconds")
        if not 0 <= float(loss) < 100:
            raise ValueError("loss must be a percentage in [0, 100)")
        if ipv6 not in IPV6_MODES:
            raise ValueError("ipv6 must be one of %s, not %r" % (IPV6_MODES, ipv6))
        self.natA = natA
        self.natB = natA if sameNAT else natB
        self.sameNAT = bool(sameNAT)
        self.hairpin = bool(hairpin)
        self.delay = float(delay)
        self.loss = float(loss)
        self.alternateAddress = bool(alternateAddress)
        self._verifyOnEnter = verify
        self._log = log or (lambda message: None)

        self.serverAddress = SERVER_ADDRESS
        self.serverAlternateAddress = SERVER_ALTERNATE_ADDRESS if alternateAddress else None
        self.secondServerAddress = SECOND_SERVER_ADDRESS if secondServer else None
        self.natAPublic = NAT_A_PUBLIC
        self.natBPublic = NAT_A_PUBLIC if sameNAT else NAT_B_PUBLIC
        self.peerAAddress = PEER_A_ADDRESS
        self.peerBAddress = PEER_B_SAME_NAT_ADDRESS if sameNAT else PEER_B_ADDRESS
        self.probeAddresses = PROBE_ADDRESSES
        self.ipv6 = ipv6
        self.serverAddress6 = SERVER_ADDRESS6 if ipv6 else None
        self.peerAAddress6 = PEER_A_ADDRESS6 if ipv6 else None
        self.peerBAddress6 = None
        if ipv6:
            self.peerBAddress6 = PEER_B_SAME_NAT_ADDRESS6 if sameNAT else PEER_B_ADDRESS6

        self.prefix = None
        self.namespaces = {}
        self.probeResults = None
        self._created = []
        self._procs = []
        self._started = False
        self._closed = False

    # -- life cycle -----------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *excInfo):
        self.close()
        return False

    def start(self):
        """
        Build the lab (and verify it unless disabled).  On any failure the
        partial lab is torn down before the exception propagates.
        """
        if self._started:
            raise NatLabError("lab already started")
        reason = labUnavailableReason()
        if reason is not None:
            raise NatLabError(reason)
        self._started = True
        atexit.register(self.close)
        try:
            self._build()
            if self.secondServerAddress:
                self._buildSecondServer()
            if self._verifyOnEnter:
                self.verify()
        except BaseException:
            self.close()
            raise

    def close(self):
        """
        Tear everything down: tracked processes (SIGTERM to their process
        group, then SIGKILL), any process still inside a lab namespace,
        then the namespaces themselves.  Idempotent.  Raises L{NatLabError}
        if something could not be removed.
        """
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        # A second Ctrl-C must not cut the teardown short (it is bounded).
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous is not None:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            problems = self._teardown()
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
            try:
                atexit.unregister(self.close)
            except Exception:
                pass
        if problems:
            raise NatLabError("teardown incomplete: " + "; ".join(problems))

    def _teardown(self):
        problems = []
        live = [p for p in self._procs if p.poll() is None]
        for p in live:
            _signalGroup(p, signal.SIGTERM)
        deadline = time.monotonic() + 2.0
        for p in live:
            try:
                p.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for p in live:
            if p.poll() is None:
                _signalGroup(p, signal.SIGKILL)
                try:
                    p.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    problems.append("process %d did not die" % (p.pid,))
        for p in self._procs:
            for stream in (p.stdin, p.stdout, p.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except OSError:
                        pass
        # Anything still running inside our namespaces was started there by
        # this lab (or by a user inside the lab): it has to go too.
        for ns in self._created:
            for pid in namespacePids(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 3.0
        for ns in self._created:
            while namespacePids(ns) and time.monotonic() < deadline:
                time.sleep(0.02)
        for ns in reversed(self._created):
            result = _sh(["ip", "netns", "del", ns], check=False)
            if result.returncode != 0 and ns in listNamespaces():
                problems.append("cannot delete %s: %s" % (ns, result.stderr.strip()))
            shutil.rmtree(os.path.join(_NETNS_ETC, ns), ignore_errors=True)
        self._created = []
        return problems

    # -- running things -------------------------------------------------

    def netns(self, host):
        """
        The namespace name of C{host} ('server', 'peerA', 'peerB', 'natA',
        'natB' or 'inet').
        """
        try:
            return self.namespaces[host]
        except KeyError:
            raise ValueError(
                "no host %r in this lab (hosts: %s)" % (host, ", ".join(self.namespaces))
            ) from None

    def command(self, host, argv):
        """
        The argv that runs C{argv} inside C{host}'s namespace.
        """
        return ["ip", "netns", "exec", self.netns(host)] + list(argv)

    def spawn(self, host, argv, **popenKwargs):
        """
        Start C{argv} inside C{host}'s namespace and return the Popen.  The
        process gets its own process group (unless C{start_new_session} is
        given) and is killed on teardown (SIGTERM, then SIGKILL).
        """
        if self._closed or not self._started:
            raise NatLabError("lab is not running")
        popenKwargs.setdefault("start_new_session", True)
        process = subprocess.Popen(self.command(host, argv), **popenKwargs)
        self._procs.append(process)
        return process

    def run(self, host, argv, timeout=30.0, check=False, input=None, **popenKwargs):
        """
        Run C{argv} inside C{host}'s namespace to completion and return a
        CompletedProcess (text output captured unless C{stdout}/C{stderr}
        are given).  On timeout the process group is killed and
        C{subprocess.TimeoutExpired} is raised.
        """
        popenKwargs.setdefault("stdout", subprocess.PIPE)
        popenKwargs.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            popenKwargs.setdefault("stdin", subprocess.PIPE)
        popenKwargs.setdefault("text", True)
        process = self.spawn(host, argv, **popenKwargs)
        try:
            stdout, stderr = process.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _signalGroup(process, signal.SIGKILL)
            process.communicate()
            raise
        result = subprocess.CompletedProcess(
            process.args, process.returncode, stdout, stderr
        )
        if check:
            result.check_returncode()
        return result

    def udpCounters(self, host):
        """
        The UDP counters of C{host}'s namespace so far (the C{Udp:} lines of
        its C{/proc/net/snmp}), by name: C{OutDatagrams}, C{RcvbufErrors}...
        """
        snmp = self.run(host, ["cat", "/proc/net/snmp"], timeout=10).stdout
        names, values = [line.split()[1:] for line in snmp.splitlines() if line.startswith("Udp:")]
        return {name: int(value) for name, value in zip(names, values)}

    def agent(self, host):
        """
        Start a UDP test L{Agent} inside C{host} (stopped on teardown, or
        earlier with C{agent.close()}).
        """
        return Agent(self, host)

    # -- building -------------------------------------------------------

    def _ip(self, host, lines):
        _sh(["ip", "-n", self.netns(host), "-batch", "-"], input="\n".join(lines) + "\n")

    def _ip6(self, host, lines):
        _sh(["ip", "-6", "-n", self.netns(host), "-batch", "-"], input="\n".join(lines) + "\n")

    def _sysctl(self, host, settings):
        _sh(
            ["ip", "netns", "exec", self.netns(host), "sysctl", "-q", "-e", "-w"]
            + ["%s=%s" % kv for kv in settings]
        )

    def _nft(self, host, ruleset):
        _sh(["ip", "netns", "exec", self.netns(host), "nft", "-f", "-"], input=ruleset)

    def _veth(self, hostA, nameA, hostB, nameB):
        _sh(
            ["ip", "-n", self.netns(hostA), "link", "add", "name", nameA, "type", "veth",
             "peer", "name", nameB, "netns", self.netns(hostB)]
        )

    def _build(self):
        self.prefix = _newPrefix()
        roles = ["inet", "server", "natA", "peerA", "peerB"]
        if not self.sameNAT:
            roles.insert(3, "natB")
        self._log("building lab %s" % (self.prefix,))
        for role in roles:
            name = "%s-%s" % (self.prefix, role)
            # Recorded first, so an interruption cannot leak it.
            self._created.append(name)
            self.namespaces[role] = name
            _sh(["ip", "netns", "add", name])
        routers = ["inet", "natA"] + ([] if self.sameNAT else ["natB"])
        for role in roles:
            settings = [
                ("net.ipv4.conf.all.rp_filter", 0),
                ("net.ipv4.conf.default.rp_filter", 0),
            ]
            if role in routers:
                settings += [
                    ("net.ipv4.ip_forward", 1),
                    ("net.ipv4.conf.all.send_redirects", 0),
                    ("net.ipv4.conf.default.send_redirects", 0),
                ]
            if role.startswith("nat"):
                settings += [("net.bridge.bridge-nf-call-iptables", 0)]
            if self.ipv6:
                settings += _ipv6Sysctls(role in routers)
            self._sysctl(role, settings)

        # Links.  Interface names are local to each namespace.
        self._veth("inet", "srv", "server", "eth0")
        self._veth("inet", "nA", "natA", "wan")
        natLans = [("natA", _LAN_A, self.natAPublic, self.natA)]
        if not self.sameNAT:
            self._veth("inet", "nB", "natB", "wan")
            natLans.append(("natB", _LAN_B, self.natBPublic, self.natB))
        self._ip("natA", ["link add name lan type bridge"])
        self._veth("natA", "pA", "peerA", "eth0")
        if self.sameNAT:
            self._veth("natA", "pB", "peerB", "eth0")
        else:
            self._ip("natB", ["link add name lan type bridge"])
            self._veth("natB", "pB", "peerB", "eth0")

        inet = [
            "link set lo up",
            "link set srv up",
            "link set nA up",
            "addr add %s/%d dev srv" % (_INET_SERVER_SIDE, _SERVER_PREFIXLEN),
            "addr add %s/24 dev nA" % (_INET_A_SIDE,),
        ] + ["addr add %s/32 dev lo" % (a,) for a in PROBE_ADDRESSES]
        if not self.sameNAT:
            inet += ["link set nB up", "addr add %s/24 dev nB" % (_INET_B_SIDE,)]
        self._ip("inet", inet)
        server = [
            "link set lo up",
            "link set eth0 up",
            "addr add %s/%d dev eth0" % (self.serverAddress, _SERVER_PREFIXLEN),
        ]
        if self.serverAlternateAddress:
            server.append(
                "addr add %s/%d dev eth0" % (self.serverAlternateAddress, _SERVER_PREFIXLEN)
            )
        server.append("route add default via %s" % (_INET_SERVER_SIDE,))
        self._ip("server", server)

        gateways = {"natA": _INET_A_SIDE, "natB": _INET_B_SIDE}
        for nat, (lanNet, lanAddress), public, _ in natLans:
            ports = ["pA", "pB"] if (nat == "natA" and self.sameNAT) else (
                ["pA"] if nat == "natA" else ["pB"]
            )
            lines = ["link set lo up", "link set wan up", "link set lan up"]
            for port in ports:
                lines += ["link set %s master lan" % port, "link set %s up" % port]
            lines += [
                "addr add %s/24 dev wan" % (public,),
                "addr add %s/24 dev lan" % (lanAddress,),
                "route add default via %s" % (gateways[nat],),
            ]
            self._ip(nat, lines)
        peers = [("peerA", self.peerAAddress, _LAN_A[1])]
        peers.append(
            ("peerB", self.peerBAddress, _LAN_A[1] if self.sameNAT else _LAN_B[1])
        )
        for peer, address, gateway in peers:
            self._ip(
                peer,
                [
                    "link set lo up",
                    "link set eth0 up",
                    "addr add %s/24 dev eth0" % (address,),
                    "route add default via %s" % (gateway,),
                ],
            )

        for nat, (lanNet, _), public, natType in natLans:
            self._nft(nat, natRuleset(natType, public, lanNet, self.hairpin))
        self._nft("inet", internetRuleset(self.loss, delayed=self.delay > 0))
        if self.ipv6:
            self._buildIPv6()
        self._writeHosts(roles)
        if self.delay > 0:
            self._startDelayer()
        self._log(
            "lab %s built: natA=%s natB=%s sameNAT=%s hairpin=%s delay=%gs loss=%g%%"
            % (self.prefix, self.natA, self.natB, self.sameNAT, self.hairpin,
               self.delay, self.loss)
        )

    def _buildSecondServer(self):
        """
        Add the host C{server2}: a link of its own to the inet router, on
        a subnet of its own, delayed as the other links are; and, when the
        lab is verified, check that both peers reach it (L{verify} then
        flushes the NAT state this leaves).
        """
        name = "%s-server2" % (self.prefix,)
        self._created.append(name)
        self.namespaces["server2"] = name
        _sh(["ip", "netns", "add", name])
        self._sysctl(
            "server2",
            [("net.ipv4.conf.all.rp_filter", 0), ("net.ipv4.conf.default.rp_filter", 0)],
        )
        self._veth("inet", "srv2", "server2", "eth0")
        inet = [
            "link set srv2 up",
            "addr add %s/%d dev srv2" % (_INET_SECOND_SERVER_SIDE, _SECOND_SERVER_PREFIXLEN),
        ]
        if self.delay > 0:
            inet.append("rule add iif srv2 lookup %s priority 100" % (_DELAY_TABLE,))
        self._ip("inet", inet)
        self._ip(
            "server2",
            [
                "link set lo up",
                "link set eth0 up",
                "addr add %s/%d dev eth0" % (self.secondServerAddress, _SECOND_SERVER_PREFIXLEN),
                "route add default via %s" % (_INET_SECOND_SERVER_SIDE,),
            ],
        )
        if not self._verifyOnEnter:
            return
        agents = {}
        try:
            for host in ("server2", "peerA", "peerB"):
                agents[host] = self.agent(host)
            sock, _ = agents["server2"].bind(_SERVER_PROBE_PORT, self.secondServerAddress, True)
            for host in ("peerA", "peerB"):
                probe, _ = agents[host].bind()
                mapped, _ = agents[host].query(
                    probe, self.secondServerAddress, _SERVER_PROBE_PORT,
                    timeout=3.0 + 8 * self.delay, interval=max(0.1, 5 * self.delay),
                )
                if mapped is None:
                    raise NatLabError(
                        "%s cannot reach the second server at %s"
                        % (host, self.secondServerAddress)
                    )
        finally:
            for agent in agents.values():
                agent.close()

    def _writeHosts(self, roles):
        """
        Give every namespace a hosts file naming the server L{SERVER_NAME}.
        """
        hosts = "127.0.0.1 localhost\n::1 localhost\n%s %s\n" % (self.serverAddress, SERVER_NAME)
        if self.ipv6:
            hosts += "%s %s\n" % (self.serverAddress6, SERVER_NAME)
        for role in roles:
            directory = os.path.join(_NETNS_ETC, self.netns(role))
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, "hosts"), "w") as f:
                f.write(hosts)

    def _buildIPv6(self):
        """
        Give every host its IPv6 address and routes (see L{IPV6_MODES}),
        and each NAT router its IPv6 firewall.
        """
        nats = ["natA"] + ([] if self.sameNAT else ["natB"])
        lans = {"natA": _LAN_A6, "natB": _LAN_B6}
        inet = [
            "addr add %s/64 dev srv nodad" % (_INET_SERVER_SIDE6,),
        ]
        for nat in nats:
            natSide, inetSide = _WAN6[nat]
            link = "nA" if nat == "natA" else "nB"
            inet += [
                "addr add %s/64 dev %s nodad" % (inetSide, link),
                "route add %s via %s" % (lans[nat][0], natSide),
            ]
            self._ip(
                nat,
                [
                    "addr add %s/64 dev wan nodad" % (natSide,),
                    "addr add %s/64 dev lan nodad" % (lans[nat][1],),
                    "route add ::/0 via %s" % (inetSide,),
                ],
            )
            self._nft(nat, firewallRuleset6(self.ipv6))
        self._ip("inet", inet)
        self._nft("inet", internetRuleset(self.loss, delayed=self.delay > 0, family="ip6"))
        self._ip(
            "server",
            [
                "addr add %s/64 dev eth0 nodad" % (self.serverAddress6,),
                "route add ::/0 via %s" % (_INET_SERVER_SIDE6,),
            ],
        )
        gatewayB = _LAN_A6[1] if self.sameNAT else _LAN_B6[1]
        for peer, address, gateway in (
            ("peerA", self.peerAAddress6, _LAN_A6[1]),
            ("peerB", self.peerBAddress6, gatewayB),
        ):
            self._ip(
                peer,
                ["addr add %s/64 dev eth0 nodad" % (address,), "route add ::/0 via %s" % (gateway,)],
            )

    def _startDelayer(self):
        if not os.path.exists("/dev/net/tun"):
            raise NatLabError("delay needs /dev/net/tun (CONFIG_TUN)")
        process = self.spawn(
            "inet",
            [sys.executable, _DELAYER, "--tun", _DELAY_TUN, "--delay", repr(2 * self.delay)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
        )
        self._delayer = process
        readable, _, _ = select.select([process.stdout], [], [], 10.0)
        line = process.stdout.readline() if readable else b""
        if line.strip() != b"ready":
            raise NatLabError("delayer did not start (exit %r)" % (process.poll(),))
        links = ["srv", "nA"] + ([] if self.sameNAT else ["nB"])
        lines = [
            "link set %s up" % (_DELAY_TUN,),
            "route add default dev %s table %s" % (_DELAY_TUN, _DELAY_TABLE),
        ]
        lines += [
            "rule add iif %s lookup %s priority 100" % (link, _DELAY_TABLE) for link in links
        ]
        self._ip("inet", lines)
        if self.ipv6:
            # The delay line is blind to the IP version.
            self._ip6("inet", lines[1:])

    # -- checking -------------------------------------------------------

    def probe(self, host="peerA", retries=1):
        """
        Measure the NAT in front of C{host} ('peerA' or 'peerB') from the
        inside and return a dict with C{public} (address seen outside),
        C{mapping} and C{filtering} (RFC 4787 terms), C{allocation} for a
        NAT that maps per destination (L{SEQUENTIAL} when the public ports
        of new mappings follow one another, else L{RANDOM}; L{None} for
        the others), and the raw observations.  The probe sends only to
        the inet router's probe addresses, so it is neither delayed nor
        subject to loss.
        """
        inet = self.agent("inet")
        inside = self.agent(host)
        try:
            return self._probe(inet, inside, host)
        finally:
            inside.close()
            inet.close()

    def _reflectors(self, inet):
        p1, p2 = PROBE_ADDRESSES
        sockets = {}
        for key, address, port in (
            ("p1a", p1, _PROBE_PORTS[0]),
            ("p1b", p1, _PROBE_PORTS[1]),
            ("p2a", p2, _PROBE_PORTS[0]),
        ):
            sockets[key] = (inet.bind(port, address, reflect=True)[0], address, port)
        return sockets

    def _probe(self, inet, inside, host, reflectors=None):
        if reflectors is None:
            reflectors = self._reflectors(inet)
        p1a, p1b, p2a = reflectors["p1a"], reflectors["p1b"], reflectors["p2a"]
        expectedPublic = self.natAPublic if (host == "peerA" or self.sameNAT) else self.natBPublic

        # Filtering: contact only p1a, then get unsolicited traffic from
        # p1b (same address, other port) and p2a (other address).
        c1, _ = inside.bind()
        mapped, _ = inside.query(c1, p1a[1], p1a[2])
        if mapped is None:
            raise NatLabError("probe from %s: no answer from %s:%d" % (host, p1a[1], p1a[2]))
        # The control packet goes last over the same path: once it is in,
        # the others would be too.
        for (sock, _, _), tag in ((p1b, "port"), (p2a, "address"), (p1a, "control")):
            inet.send(sock, mapped[0], mapped[1], data="F-" + tag, count=2)
        got = {data for (_, _, data) in inside.recv(c1, wait=3.0, until="F-control", linger=0.05)}
        inside.closeSocket(c1)
        if "F-control" not in got:
            raise NatLabError(
                "probe from %s: NAT drops traffic from the very endpoint contacted" % (host,)
            )
        if "F-address" in got:
            filtering = ENDPOINT_INDEPENDENT
        elif "F-port" in got:
            filtering = ADDRESS_DEPENDENT
        else:
            filtering = ADDRESS_AND_PORT_DEPENDENT

        # Mapping: one local socket, three destinations.
        c2, localPort = inside.bind()
        seen = []
        for _, address, port in (p1a, p1b, p2a):
            m, _ = inside.query(c2, address, port)
            if m is None:
                raise NatLabError("probe from %s: no answer from %s:%d" % (host, address, port))
            seen.append(m)
        inside.closeSocket(c2)
        mapping = _classifyMapping(*seen)
        # Four mappings made one after the other: c1's, then c2's three.
        allocation = None
        if mapping != ENDPOINT_INDEPENDENT:
            allocation = _classifyAllocation([mapped[1]] + [m[1] for m in seen])
        publics = {mapped[0]} | {m[0] for m in seen}
        if publics != {expectedPublic}:
            raise NatLabError(
                "probe from %s: expected public address %s, saw %s"
                % (host, expectedPublic, sorted(publics))
            )
        return {
            "host": host,
            "public": expectedPublic,
            "mapping": mapping,
            "filtering": filtering,
            "allocation": allocation,
            "localPort": localPort,
            "observedMappings": seen,
            "unsolicitedReceived": sorted(t[2:] for t in got),
        }

    def _probeHairpin(self, inet, agents, reflectors):
        """
        Same-NAT labs: can peerA reach peerB's public mapping (hairpin) and
        its private address (LAN)?
        """
        a, b = agents["peerA"], agents["peerB"]
        p1a = reflectors["p1a"]
        cb, portB = b.bind()
        mappedB, _ = b.query(cb, p1a[1], p1a[2])
        if mappedB is None:
            raise NatLabError("hairpin probe: peerB got no mapping")
        ca, portA = a.bind()
        a.send(ca, mappedB[0], mappedB[1], data="H", count=3, interval=0.01)
        a.send(ca, self.peerBAddress, portB, data="L", count=2)
        # The LAN packets take the bridge, the hairpinned ones the router:
        # give the latter a little longer after the LAN ones are in.
        packets = b.recv(cb, wait=3.0, until="L", linger=0.2)
        a.closeSocket(ca)
        b.closeSocket(cb)
        hairpinSources = sorted({(ip, port) for (ip, port, data) in packets if data == "H"})
        lan = any(data == "L" for (_, _, data) in packets)
        return {"hairpin": bool(hairpinSources), "hairpinSources": hairpinSources, "lan": lan}

    def verify(self):
        """
        Probe every NAT router and compare with its configured type
        (L{EXPECTED_BEHAVIOUR}, L{PORT_ALLOCATION}); in
        same-NAT labs also check LAN reachability and hairpinning; check
        that both peers reach the server (and that the delay is there).
        Raise L{NatLabError} describing any difference.  Afterwards the
        NATs' dynamic maps and conntrack tables are flushed so the tests
        start from a clean NAT state.  Returns (and stores in
        C{probeResults}) what was found.
        """
        results = {}
        agents = {}
        try:
            for host in ("inet", "server", "peerA", "peerB"):
                agents[host] = self.agent(host)
            reflectors = self._reflectors(agents["inet"])
            sides = [("peerA", "natA", self.natA)]
            if not self.sameNAT:
                sides.append(("peerB", "natB", self.natB))
            for host, nat, natType in sides:
                expected = EXPECTED_BEHAVIOUR[natType] + (PORT_ALLOCATION.get(natType),)
                for attempt in range(2):
                    found = self._probe(agents["inet"], agents[host], host, reflectors)
                    observed = (found["mapping"], found["filtering"], found["allocation"])
                    if observed == expected:
                        break
                found["configured"] = natType
                results[nat] = found
                if observed != expected:
                    raise NatLabError(
                        "%s is configured as %s (mapping %s, filtering %s, port allocation %s) but the"
                        " probe from %s observed mapping %s, filtering %s, port allocation %s"
                        " (mappings seen %r, unsolicited packets received %r)"
                        % ((nat, natType) + expected + (host,) + observed
                           + (found["observedMappings"], found["unsolicitedReceived"]))
                    )
            if self.sameNAT:
                hp = self._probeHairpin(agents["inet"], agents, reflectors)
                results["hairpin"] = hp
                if not hp["lan"]:
                    raise NatLabError("same-NAT lab: peerA cannot reach peerB on the LAN")
                if hp["hairpin"] != self.hairpin:
                    raise NatLabError(
                        "natA hairpinning is configured %s but the probe found it %s"
                        % ("on" if self.hairpin else "off",
                           "working" if hp["hairpin"] else "not working")
                    )
                if self.hairpin and any(ip != self.natAPublic for ip, _ in hp["hairpinSources"]):
                    raise NatLabError(
                        "hairpinned packets arrive from %r, not from the public address"
                        % (hp["hairpinSources"],)
                    )
            results["server"] = self._checkServer(agents)
            if self.ipv6:
                results["ipv6"] = self._checkIPv6(agents)
        finally:
            for agent in agents.values():
                agent.close()
        self._flushNatState()
        self.probeResults = results
        return results

    def _checkServer(self, agents):
        found = {}
        if self.loss >= 50:
            return found
        server = agents["server"]
        addresses = [self.serverAddress]
        if self.serverAlternateAddress:
            addresses.append(self.serverAlternateAddress)
        sockets = [server.bind(_SERVER_PROBE_PORT, a, reflect=True)[0] for a in addresses]
        wait = 3.0 + 8 * self.delay
        for host in ("peerA", "peerB"):
            agent = agents[host]
            sock, _ = agent.bind()
            for address in addresses:
                mapped, rtt = agent.query(
                    sock, address, _SERVER_PROBE_PORT, timeout=wait,
                    interval=max(0.1, 5 * self.delay),
                )
                if mapped is None:
                    raise NatLabError("%s cannot reach the server at %s" % (host, address))
                if rtt < 4 * self.delay * 0.9:
                    raise NatLabError(
                        "%s -> server round trip %.1f ms, expected >= %.1f ms (delay)"
                        % (host, rtt * 1000, 4 * self.delay * 1000)
                    )
                found["%s->%s" % (host, address)] = {"mapped": mapped, "rtt": rtt}
            agent.closeSocket(sock)
        for sock in sockets:
            server.closeSocket(sock)
        return found

    def _checkIPv6(self, agents):
        """
        Both peers reach the server over IPv6, from their own addresses,
        through firewalls; behind "drop" routers neither does.
        """
        found = {}
        if self.loss >= 50:
            return found
        server = agents["server"]
        reflector, _ = server.bind(_SERVER_PROBE_PORT, self.serverAddress6, reflect=True)
        expectReach = self.ipv6 == "firewall"
        wait = (3.0 if expectReach else 0.5) + 8 * self.delay
        for host, own in (("peerA", self.peerAAddress6), ("peerB", self.peerBAddress6)):
            agent = agents[host]
            sock, _ = agent.bind(address="::")
            mapped, rtt = agent.query(
                sock, self.serverAddress6, _SERVER_PROBE_PORT, timeout=wait,
                interval=max(0.1, 5 * self.delay),
            )
            agent.closeSocket(sock)
            if expectReach and (mapped is None or mapped[0] != own):
                raise NatLabError(
                    "%s -> server over IPv6: expected an answer to %s, got %r"
                    % (host, own, mapped)
                )
            if not expectReach and mapped is not None:
                raise NatLabError(
                    "%s reached the server over IPv6 through a router that drops IPv6" % (host,)
                )
            found["%s->%s" % (host, self.serverAddress6)] = {"mapped": mapped, "rtt": rtt}
        server.closeSocket(reflector)
        return found

    def _flushNatState(self):
        for nat in ("natA", "natB"):
            if nat not in self.namespaces:
                continue
            self._nft(
                nat,
                "flush map ip natlab m_in\nflush map ip natlab m_out\n"
                "flush set ip natlab s_peer\nflush set ip natlab s_sent\n",
            )
            if self.ipv6:
                self._nft(nat, "flush set ip6 natlab s_sent\n")
            self.run(nat, [sys.executable, _THIS_FILE, "_ctflush"], timeout=10, check=True)

    def changeNAT(self, nat, natType, flush=False):
        """
        Reconfigure the router C{nat} ('natA' or 'natB') as a NAT of type
        C{natType}, in one nftables transaction.

        Without C{flush}, as a real router whose rules change, it keeps
        its state: the flows under way keep their public ports, the
        mappings made so far stay known to a cone, and the new rules
        apply to new flows.  With C{flush}, as a router rebooted: it
        forwards nothing while its conntrack table is emptied, and starts
        again with empty maps and counters (L{sent}), so every flow starts
        again under the new rules with a new mapping: the hosts behind it
        are rebound.
        """
        if nat not in ("natA", "natB") or nat not in self.namespaces:
            raise ValueError("no NAT router %r in this lab" % (nat,))
        if natType not in ALL_NAT_TYPES:
            raise ValueError("natType must be one of %s, not %r" % (ALL_NAT_TYPES, natType))
        lan, public = (_LAN_A[0], self.natAPublic) if nat == "natA" else (_LAN_B[0], self.natBPublic)
        ruleset = natRuleset(natType, public, lan, self.hairpin)
        if flush:
            # Down while the table empties: no packet in between makes a
            # flow, or fills a map, with an old mapping.
            self._nft(nat, ruleset + "insert rule ip natlab forward drop\n")
            self.run(nat, [sys.executable, _THIS_FILE, "_ctflush"], timeout=10, check=True)
            self._nft(nat, ruleset)
        else:
            # The same table, maps and all: its chains' rules replaced.
            # The maps know every mapping made (the record chain fills
            # them whatever the type), as a router's conntrack table does.
            _, _, tables = ruleset.partition("delete table ip natlab\n")
            self._nft(nat, "".join("flush chain ip natlab %s\n" % chain for chain in _NAT_CHAINS) + tables)
        setattr(self, nat, natType)

    def sent(self, nat):
        """
        What the hosts behind C{nat} ('natA' or 'natB') have sent out
        through it since L{verify} (or since the lab was built, without
        it): C{{address: (datagrams, bytes)}} for
        each destination address, counting UDP datagrams and their
        payload bytes.  With IPv6, IPv6 destinations are counted too
        (with C{ipv6="drop"}, what was sent to the router and dropped
        there).
        """
        # The counters count IP packets: 20 bytes of IPv4 header (40 of
        # IPv6) and 8 of UDP header each.
        families = [("ip", 28)] + ([("ip6", 48)] if self.ipv6 else [])
        found = {}
        for family, headers in families:
            listing = self.run(
                nat, ["nft", "-j", "list", "set", family, "natlab", "s_sent"],
                timeout=10, check=True,
            )
            for entry in json.loads(listing.stdout)["nftables"]:
                for element in entry.get("set", {}).get("elem", ()):
                    counter = element["elem"]["counter"]
                    found[element["elem"]["val"]] = (
                        counter["packets"],
                        counter["bytes"] - headers * counter["packets"],
                    )
        return found

    # -- presentation ---------------------------------------------------

    def describe(self):
        """
        A human-readable summary of addresses, namespaces and how to use them.
        """
        lines = [
            "natlab %s: natA=%s%s, hairpin=%s, delay=%g ms/link, loss=%g%%"
            % (self.prefix, self.natA,
               " (both peers behind it)" if self.sameNAT else ", natB=%s" % self.natB,
               "on" if self.hairpin else "off", self.delay * 1000, self.loss),
            "  server       %s%s" % (
                self.serverAddress,
                " (alternate %s)" % self.serverAlternateAddress
                if self.serverAlternateAddress else ""),
            "  natA public  %s" % self.natAPublic,
            "  natB public  %s%s" % (self.natBPublic, " (same NAT)" if self.sameNAT else ""),
            "  peerA        %s" % self.peerAAddress,
            "  peerB        %s" % self.peerBAddress,
        ]
        if self.ipv6:
            lines += [
                "IPv6 (%s in the NAT routers):" % (
                    "stateful firewall" if self.ipv6 == "firewall" else "all dropped"),
                "  server       %s" % self.serverAddress6,
                "  peerA        %s" % self.peerAAddress6,
                "  peerB        %s" % self.peerBAddress6,
            ]
        lines += [
            "namespaces:",
        ]
        for host in HOSTS:
            if host in self.namespaces:
                lines.append("  %-6s %s" % (host, self.namespaces[host]))
        lines.append(
            "run a command in one:  ip netns exec %s <command>" % self.namespaces.get("peerA", "NS")
        )
        return "\n".join(lines)


def _signalGroup(process, signum):
    """
    Signal a process we started: its whole process group when it leads one
    (the default for L{Lab.spawn}), else just the process.  Never called
    for a process that has already been reaped.
    """
    if process.poll() is not None:
        return
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            os.kill(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


#: The chains of L{natRuleset}'s table.
_NAT_CHAINS = ("pre", "post", "record", "input", "forward")


def natRuleset(natType, public, lanNet, hairpin):
    """
    The nftables ruleset for a NAT router with WAN interface "wan" (address
    C{public}) and LAN bridge "lan" (network C{lanNet}).
    """
    if natType not in ALL_NAT_TYPES:
        raise ValueError(natType)
    cone = natType not in PORT_ALLOCATION
    sequential = None
    if natType == "symmetric-sequential":
        # A NAT rule runs only on a flow's first packet: each new UDP flow
        # takes the next port.  Through a map, because numgen's number is
        # in host byte order and a port in network byte order.
        sequential = "meta l4proto udp snat to %s : numgen inc mod %d map { %s }" % (
            public,
            len(SEQUENTIAL_PORTS),
            ", ".join("%d : %d" % (i, port) for i, port in enumerate(SEQUENTIAL_PORTS)),
        )
    pre = []
    if natType == "full-cone":
        pre.append('iifname "wan" ip daddr %s meta l4proto udp dnat to udp dport map @m_in' % public)
    elif natType == "restricted-cone":
        pre.append(
            'iifname "wan" ip daddr %s meta l4proto udp udp dport . ip saddr @s_peer'
            " dnat to udp dport map @m_in" % public
        )
    if hairpin:
        pre.append('iifname "lan" ip daddr %s meta l4proto udp dnat to udp dport map @m_in' % public)
    post = []
    if cone:
        # Keep a mapping once made (endpoint-independent even when two
        # inside hosts use the same port), else plain masquerade (which
        # preserves the port when it can).
        post.append(
            'oifname "wan" ip saddr %s meta l4proto udp snat to %s : ip saddr . udp sport map @m_out'
            % (lanNet, public)
        )
        post.append('oifname "wan" ip saddr %s masquerade' % lanNet)
    else:
        if sequential:
            post.append('oifname "wan" ip saddr %s %s' % (lanNet, sequential))
        post.append('oifname "wan" ip saddr %s masquerade fully-random' % lanNet)
    if hairpin:
        if cone:
            post.append(
                'iifname "lan" oifname "lan" ct status dnat ip saddr %s'
                " meta l4proto udp snat to %s : ip saddr . udp sport map @m_out"
                % (lanNet, public)
            )
        elif sequential:
            post.append(
                'iifname "lan" oifname "lan" ct status dnat ip saddr %s %s' % (lanNet, sequential)
            )
        post.append(
            'iifname "lan" oifname "lan" ct status dnat ip saddr %s snat to %s%s'
            % (lanNet, public, "" if cone else " fully-random")
        )
    return """\
table ip natlab
delete table ip natlab
table ip natlab {
    # public port -> inside endpoint
    map m_in { typeof udp dport : ip daddr . udp dport ; flags dynamic,timeout ; timeout 10m ; }
    # inside endpoint -> public port
    map m_out { typeof ip saddr . udp sport : udp sport ; flags dynamic,timeout ; timeout 10m ; }
    # (public port, remote address) pairs contacted
    set s_peer { typeof udp sport . ip daddr ; flags dynamic,timeout ; timeout 10m ; }
    # UDP datagrams and bytes sent out from the LAN, per destination address
    set s_sent { typeof ip daddr ; flags dynamic ; counter ; }

    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
%(pre)s
    }
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
%(post)s
    }
    chain record {
        type filter hook postrouting priority srcnat + 10; policy accept;
        oifname "wan" ip saddr %(public)s ct original ip saddr %(lan)s update @m_in { udp sport : ct original ip saddr . ct original proto-src } update @m_out { ct original ip saddr . ct original proto-src : udp sport } update @s_peer { udp sport . ip daddr }
        oifname "wan" ct original ip saddr %(lan)s meta l4proto udp update @s_sent { ip daddr }
    }
    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" drop
        iifname "lan" ip daddr %(public)s meta l4proto udp drop
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" oifname "lan" ct status dnat accept
        iifname "wan" drop
    }
}
""" % {
        "pre": "\n".join("        " + r for r in pre),
        "post": "\n".join("        " + r for r in post),
        "public": public,
        "lan": lanNet,
    }


def internetRuleset(loss, delayed, family="ip"):
    """
    The inet router's ruleset for the nftables C{family} ("ip", or "ip6"
    in a lab with IPv6): random loss, counted once per crossing (not
    again when a delayed packet comes back from the delay device).
    """
    rules = []
    if loss > 0:
        condition = 'iifname != "%s" ' % _DELAY_TUN if delayed else ""
        rules.append(
            "%snumgen random mod 10000 < %d drop" % (condition, int(round(loss * 100)))
        )
    return """\
table %(family)s natlab
delete table %(family)s natlab
table %(family)s natlab {
    chain forward {
        type filter hook forward priority filter; policy accept;
%(rules)s
    }
}
""" % {"family": family, "rules": "\n".join("        " + r for r in rules)}


def _ipv6Sysctls(router):
    """
    The IPv6 settings of a lab host: addresses usable at once (no
    duplicate address detection, which would hold them back for a
    second), no router advertisements, and forwarding in routers.
    """
    settings = [
        ("net.ipv6.conf.all.disable_ipv6", 0),
        ("net.ipv6.conf.default.disable_ipv6", 0),
        ("net.ipv6.conf.all.accept_dad", 0),
        ("net.ipv6.conf.default.accept_dad", 0),
        ("net.ipv6.conf.all.accept_ra", 0),
        ("net.ipv6.conf.default.accept_ra", 0),
    ]
    if router:
        settings += [
            ("net.ipv6.conf.all.forwarding", 1),
            ("net.bridge.bridge-nf-call-ip6tables", 0),
        ]
    return settings


def firewallRuleset6(mode):
    """
    The IPv6 ruleset of a NAT router (WAN interface "wan", LAN bridge
    "lan"): with C{mode} "firewall", forwarded from the LAN to the WAN
    freely, from the WAN only for flows the LAN started (conntrack's
    flows are per address and port: address-and-port-dependent
    filtering); with "drop", nothing forwarded at all.  The router itself
    answers neighbour discovery on both sides either way, so a host's
    IPv6 looks usable even when it is dropped.
    """
    if mode not in IPV6_MODES[1:]:
        raise ValueError(mode)
    forward = []
    if mode == "firewall":
        forward = [
            "ct state established,related accept",
            'iifname "lan" oifname "wan" accept',
        ]
    return """\
table ip6 natlab
delete table ip6 natlab
table ip6 natlab {
    # UDP datagrams and bytes sent from the LAN, per destination address
    set s_sent { typeof ip6 daddr ; flags dynamic ; counter ; }

    chain input {
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state established,related accept
        iifname "wan" icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, echo-request } accept
        iifname "wan" drop
    }
    chain forward {
        type filter hook forward priority filter; policy drop;
        iifname "lan" oifname "wan" meta l4proto udp update @s_sent { ip6 daddr }
%s
    }
}
""" % "\n".join("        " + r for r in forward)


# -- processes run inside the namespaces -----------------------------------


def _agentMain():
    """
    The UDP agent: JSON requests on stdin, one JSON answer per line on
    stdout.  Exits on "quit" or when stdin closes (its lab went away).
    """
    sockets = {}
    reflectors = set()
    buffers = {}
    replies = {}
    ids = itertools.count(1)
    out = sys.stdout

    def service(readable):
        for sid in readable:
            sock = sockets.get(sid)
            if sock is None:
                continue
            for _ in range(1000):
                try:
                    data, source = sock.recvfrom(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                now = time.monotonic()
                if sid in reflectors and data.startswith(b"WHO "):
                    answer = b"SEEN %s %d %s" % (source[0].encode(), source[1], data[4:])
                    try:
                        sock.sendto(answer, source)
                    except OSError:
                        pass
                elif data.startswith(b"SEEN "):
                    parts = data.split()
                    if len(parts) == 4:
                        replies[(sid, parts[3].decode("latin-1"))] = (
                            (parts[1].decode("latin-1"), int(parts[2])),
                            now,
                        )
                else:
                    queue = buffers.setdefault(sid, [])
                    if len(queue) < 100000:
                        queue.append((source[0], source[1], data.decode("latin-1")))

    def pump(duration, until=None):
        deadline = time.monotonic() + duration
        while True:
            if until is not None and until():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            fds = {s.fileno(): sid for sid, s in sockets.items()}
            try:
                readable, _, _ = select.select(list(fds), [], [], remaining)
            except InterruptedError:
                continue
            service([fds[fd] for fd in readable])

    def query(sid, host, port, wait, interval):
        sock = sockets[sid]
        base = "%x%x" % (os.getpid(), next(ids))
        sent = {}
        deadline = time.monotonic() + wait
        attempt = 0
        while time.monotonic() < deadline:
            nonce = "%s.%d" % (base, attempt)
            sent[nonce] = time.monotonic()
            try:
                sock.sendto(("WHO " + nonce).encode(), (host, port))
            except OSError:
                pass
            attempt += 1

            def answered():
                return any((sid, n) in replies for n in sent)

            if pump(min(interval, max(0.0, deadline - time.monotonic())), answered):
                for n in sent:
                    if (sid, n) in replies:
                        mapped, when = replies.pop((sid, n))
                        for other in sent:
                            replies.pop((sid, other), None)
                        return list(mapped), when - sent[n]
        return None, None

    def handle(request):
        op = request.get("op")
        if op == "bind":
            address = request.get("address", "0.0.0.0")
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((address, int(request.get("port", 0))))
            sock.setblocking(False)
            sid = next(ids)
            sockets[sid] = sock
            if request.get("reflect"):
                reflectors.add(sid)
            return {"sock": sid, "port": sock.getsockname()[1]}
        if op == "send":
            sock = sockets[request["sock"]]
            count = min(int(request.get("count", 1)), 100000)
            interval = float(request.get("interval", 0))
            sent = 0
            for i in range(count):
                try:
                    sock.sendto(
                        request.get("data", "x").encode("latin-1"),
                        (request["host"], int(request["port"])),
                    )
                    sent += 1
                except OSError:
                    pass
                if interval and i + 1 < count:
                    pump(interval)
            return {"sent": sent}
        if op == "query":
            mapped, rtt = query(
                request["sock"], request["host"], int(request["port"]),
                min(float(request.get("wait", 2.0)), 60.0),
                max(float(request.get("interval", 0.1)), 0.005),
            )
            return {"mapped": mapped, "rtt": rtt}
        if op == "rtts":
            rtts = []
            for _ in range(min(int(request.get("count", 10)), 1000)):
                wait = min(float(request.get("wait", 1.0)), 10.0)
                _, rtt = query(request["sock"], request["host"], int(request["port"]), wait, wait)
                rtts.append(rtt)
            return {"rtts": rtts}
        if op == "recv":
            sid = request["sock"]
            until = request.get("until")
            wait = min(float(request.get("wait", 0.3)), 60.0)
            if until is None:
                pump(wait)
            else:
                pump(wait, lambda: any(p[2] == until for p in buffers.get(sid, ())))
                pump(min(float(request.get("linger", 0.0)), 10.0))
            return {"packets": buffers.pop(sid, [])}
        if op == "close":
            sid = request["sock"]
            sockets.pop(sid).close()
            reflectors.discard(sid)
            buffers.pop(sid, None)
            return {}
        if op == "quit":
            return {"quit": True}
        raise ValueError("unknown op %r" % (op,))

    stdinBuffer = b""
    while True:
        fds = {s.fileno(): sid for sid, s in sockets.items()}
        try:
            readable, _, _ = select.select([0] + list(fds), [], [], 1.0)
        except InterruptedError:
            continue
        service([fds[fd] for fd in readable if fd in fds])
        if 0 not in readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return 0
        stdinBuffer += chunk
        while b"\n" in stdinBuffer:
            line, stdinBuffer = stdinBuffer.split(b"\n", 1)
            if not line.strip():
                continue
            try:
                answer = handle(json.loads(line))
                answer["ok"] = True
            except Exception as e:
                answer = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
            out.write(json.dumps(answer) + "\n")
            out.flush()
            if answer.get("quit"):
                return 0


def _conntrackFlush():
    """
    Flush the conntrack table of the current network namespace through
    ctnetlink (so the conntrack tool is not needed).
    """
    NETLINK_NETFILTER = 12
    NFNL_SUBSYS_CTNETLINK = 1
    IPCTNL_MSG_CT_DELETE = 2
    NLM_F_REQUEST, NLM_F_ACK = 1, 4
    NLMSG_ERROR = 2
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    try:
        sock.bind((0, 0))
        # AF_UNSPEC: every family, IPv6 flows included.
        body = struct.pack("BBH", socket.AF_UNSPEC, 0, 0)
        header = struct.pack(
            "=IHHII",
            16 + len(body),
            (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
            NLM_F_REQUEST | NLM_F_ACK,
            1,
            0,
        )
        sock.sendall(header + body)
        sock.settimeout(5)
        data = sock.recv(65536)
        length, msgType = struct.unpack_from("=IH", data)
        if msgType == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, 16)
            if error not in (0, -2):  # -ENOENT: table already empty
                raise OSError(-error, os.strerror(-error))
    finally:
        sock.close()
    return 0


# -- command line -----------------------------------------------------------


def cleanup(everything=False, out=sys.stdout):
    """
    Remove leftover lab namespaces (names ``pl<pid>-<n>-<role>``) whose
    creating process is gone (all of them with C{everything}), killing any
    process still inside them first.  Returns the names removed.
    """
    removed = []
    for name in listNamespaces():
        match = NAMESPACE_PATTERN.match(name)
        if match is None:
            continue
        pid = int(match.group("pid"))
        if not everything and pid != os.getpid() and _pidAlive(pid):
            out.write("keeping %s: its lab process %d is still running\n" % (name, pid))
            continue
        for victim in namespacePids(name):
            out.write("killing process %d inside %s\n" % (victim, name))
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while namespacePids(name) and time.monotonic() < deadline:
            time.sleep(0.02)
        result = _sh(["ip", "netns", "del", name], check=False)
        shutil.rmtree(os.path.join(_NETNS_ETC, name), ignore_errors=True)
        if result.returncode == 0:
            out.write("removed %s\n" % name)
            removed.append(name)
        else:
            out.write("could not remove %s: %s\n" % (name, result.stderr.strip()))
    return removed


def _checkAll(out=sys.stdout):
    """
    Build each NAT type (two per lab) plus same-NAT labs with and without
    hairpinning, probe them and print a table.  Returns True if everything
    behaved as configured.
    """
    rows = []
    ok = True
    started = time.monotonic()
    pairs = (
        ("full-cone", "restricted-cone"),
        ("port-restricted-cone", "symmetric"),
        ("symmetric-sequential", "full-cone"),
    )
    for natA, natB in pairs:
        with Lab(natA=natA, natB=natB, verify=False) as lab:
            for host, nat, natType in (("peerA", "natA", natA), ("peerB", "natB", natB)):
                try:
                    found = lab.probe(host)
                    expected = EXPECTED_BEHAVIOUR[natType] + (PORT_ALLOCATION.get(natType),)
                    good = (found["mapping"], found["filtering"], found["allocation"]) == expected
                    mapping = found["mapping"]
                    if found["allocation"]:
                        mapping += ", %s ports" % found["allocation"]
                    rows.append((natType, mapping, found["filtering"],
                                 " ".join(str(m[1]) for m in found["observedMappings"]),
                                 "ok" if good else "MISMATCH"))
                except NatLabError as e:
                    good = False
                    rows.append((natType, "?", "?", "", "ERROR %s" % e))
                ok = ok and good
    for hairpin in (False, True):
        label = "same NAT, hairpin %s" % ("on" if hairpin else "off")
        try:
            with Lab(sameNAT=True, hairpin=hairpin) as lab:
                hp = lab.probeResults["hairpin"]
            rows.append((label, "hairpin works" if hp["hairpin"] else "no hairpin",
                         "LAN ok" if hp["lan"] else "LAN broken", "", "ok"))
        except NatLabError as e:
            ok = False
            rows.append((label, "?", "?", "", "ERROR %s" % e))
    header = ("NAT", "mapping", "filtering", "ports seen", "result")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(4)]
    for row in [header] + rows:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(row, widths)) + "  " + row[4] + "\n")
    out.write("checked in %.1f s\n" % (time.monotonic() - started))
    return ok


def _raiseKeyboardInterrupt(signum, frame):
    raise KeyboardInterrupt()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m tests.natlab",
        description="Build NAT labs from network namespaces (root required).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    up = sub.add_parser("up", help="build a lab, print it, wait for Ctrl-C, tear down")
    up.add_argument("--nat-a", default="port-restricted-cone", choices=ALL_NAT_TYPES)
    up.add_argument("--nat-b", default="port-restricted-cone", choices=ALL_NAT_TYPES)
    up.add_argument("--same-nat", action="store_true", help="both peers behind natA")
    up.add_argument("--hairpin", action="store_true", help="NAT routers hairpin")
    up.add_argument("--delay", type=float, default=0.0, metavar="MS",
                    help="one-way delay per link in milliseconds")
    up.add_argument("--loss", type=float, default=0.0, metavar="PCT",
                    help="loss percentage at the internet router")
    up.add_argument("--alternate-address", action="store_true",
                    help="give the server a second address")
    up.add_argument("--no-verify", action="store_true", help="skip the NAT probes")
    up.add_argument("--ipv6", choices=IPV6_MODES[1:], default=None,
                    help="IPv6 for every host, through a stateful firewall or dropped"
                    " in the NAT routers")
    sub.add_parser("check", help="build and probe every NAT type, print a table")
    clean = sub.add_parser("cleanup", help="remove leftover lab namespaces")
    clean.add_argument("--all", action="store_true",
                       help="also those whose creating process still runs")
    sub.add_parser("_agent")
    sub.add_parser("_ctflush")
    args = parser.parse_args(argv)

    if args.command == "_agent":
        return _agentMain()
    if args.command == "_ctflush":
        return _conntrackFlush()
    if args.command is None:
        parser.print_help()
        return 2
    # Ctrl-C, SIGTERM and SIGHUP all tear the lab down (installed
    # explicitly: a shell starts background jobs with SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raiseKeyboardInterrupt)
    signal.signal(signal.SIGHUP, _raiseKeyboardInterrupt)
    if args.command == "cleanup":
        if os.geteuid() != 0:
            sys.stderr.write("natlab cleanup needs root\n")
            return 2
        cleanup(everything=args.all)
        return 0
    try:
        reason = labUnavailableReason()
    except KeyboardInterrupt:
        return 130
    if reason is not None:
        sys.stderr.write("natlab unavailable: %s\n" % reason)
        return 2
    if args.command == "check":
        try:
            return 0 if _checkAll() else 1
        except KeyboardInterrupt:
            return 130
    log = lambda message: sys.stdout.write(message + "\n")
    try:
        with Lab(natA=args.nat_a, natB=args.nat_b, sameNAT=args.same_nat,
                 hairpin=args.hairpin, delay=args.delay / 1000.0, loss=args.loss,
                 alternateAddress=args.alternate_address,
                 verify=not args.no_verify, log=log, ipv6=args.ipv6) as lab:
            print(lab.describe())
            if lab.probeResults:
                for nat in ("natA", "natB"):
                    if nat in lab.probeResults:
                        r = lab.probeResults[nat]
                        print("verified %s: %s mapping, %s filtering"
                              % (nat, r["mapping"], r["filtering"]))
                if "hairpin" in lab.probeResults:
                    print("verified hairpin: %s" % lab.probeResults["hairpin"]["hairpin"])
            print("Ctrl-C to tear down.")
            sys.stdout.flush()
            while True:
                signal.pause()
    except KeyboardInterrupt:
        print("tearing down")
    except NatLabError as e:
        sys.stderr.write("natlab: %s\n" % e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
