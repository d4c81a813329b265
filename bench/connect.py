"""
Benchmarks 4 and 5: the time to connect, and what punching costs.

Time to connect is from the moment the second peer sends its first
registration to the moment both peers have a direct path up, in round
trips between a peer and the stage manager.

  - Simulated: L{punchd.testing}'s network, every link 50 ms one way
    (so a round trip from a peer behind its NAT to the stage manager is
    300 ms), on the simulated clock; the real L{StageManagerProtocol} and
    L{PeerProtocol}.
  - Real: the NAT lab of C{tests/natlab.py} (network namespaces and
    nftables; root only), two port-restricted cone NATs, 20 ms a link; the
    real C{twistd punch-server} and C{punch-peer} processes, their events
    timed on the machine's monotonic clock (L{bench.timelog}).  The round
    trip is measured in each run: from the second peer's registration to
    its answer.

Punch cost: the datagrams and bytes (UDP payload) each peer sends from the
moment the introduction reaches it to the moment its path is up, counted in
the simulated network.
"""

import re
import statistics
import time

from punchd import messages, stun
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.testing import Network, fullCone, portRestrictedCone, restrictedCone, symmetric

SERVER = ("192.0.2.10", 8080)

#: The NAT pairs the simulated benchmark connects.
NAT_PAIRS = [
    ("full cone", fullCone(), "full cone", fullCone()),
    ("restricted cone", restrictedCone(), "restricted cone", restrictedCone()),
    ("port-restricted cone", portRestrictedCone(), "port-restricted cone", portRestrictedCone()),
    ("symmetric", symmetric(), "full cone", fullCone()),
]


def _isIntroduction(data):
    try:
        message = stun.decode(data)
    except stun.StunError:
        return False
    return (message.method, message.messageClass) == (messages.INTRODUCE, stun.REQUEST)


def simulated(natA, natB, latency=0.05, gap=1.0, limit=10.0, peerSecret=None):
    """
    Connect alice and bob, each behind a NAT of its own, over the simulated
    network.

    @param peerSecret: A secret the two peers share (C{punch-peer
        --peer-secret-file}), or L{None}.

    @return: A L{dict} of figures, or with C{"failed"} if the path did not
        come up within C{limit} seconds.
    """
    network = Network(latency=latency)
    clock = network.clock
    serverHost = network.host(SERVER[0])
    serverHost.listenUDP(SERVER[1], StageManagerProtocol(serverHost, Phonebook(100, 60.0)))
    hosts = {}
    up = {}
    for name, wants, nat, public, private, port in (
        ("alice", "bob", natA, "198.51.100.1", "10.0.1.2", 5000),
        ("bob", "alice", natB, "203.0.113.1", "10.0.2.2", 6000),
    ):
        box = network.nat(public, **nat)
        host = hosts[name] = network.host(private, behind=box)
        peer = PeerProtocol(
            host, SERVER, name, wants, localHosts=(private,), peerSecret=peerSecret
        )

        def pathUp(punch, name=name, original=peer.pathUp):
            up.setdefault(name, clock.seconds())
            original(punch)

        peer.pathUp = pathUp
        if name == "bob":
            network.advance(gap)
            secondRegistration = clock.seconds()
        host.listenUDP(port, peer)
        roundTrip = 2 * (host.latency + box.latency + serverHost.latency)
    while len(up) < 2 and clock.seconds() - secondRegistration < limit:
        network.advance(0.001)
    if len(up) < 2:
        return {"failed": True, "roundTrip": roundTrip}
    connected = max(up.values()) - secondRegistration
    cost = {}
    for name, host in hosts.items():
        introduced = min(
            d.time
            for d in network.traffic
            if d.delivered and d.where is host and _isIntroduction(d.data)
        )
        sent = [
            d
            for d in network.traffic
            if d.sender is host and introduced <= d.sentAt <= up[name]
        ]
        cost[name] = {
            "datagrams": len(sent),
            "bytes": sum(len(d.data) for d in sent),
            "toPeer": sum(1 for d in sent if d.destination != SERVER),
        }
    return {
        "seconds": connected,
        "roundTrip": roundTrip,
        "roundTrips": connected / roundTrip,
        "cost": cost,
    }


_LISTENING = re.compile(r"^(\d+\.\d+) Stage manager: .* Listening on port")
_REGISTERED = re.compile(r"^(\d+\.\d+) Registered with the stage manager as")
_UP = re.compile(r"^(\d+\.\d+) Direct path to \S+ is up")
_SERVER_UP = re.compile(r"Stage manager listening on")


def _first(processes, label, pattern):
    for line in processes.output(label).splitlines():
        match = pattern.search(line)
        if match:
            return float(match.group(1))
    return None


def _waitFirst(processes, label, pattern, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _first(processes, label, pattern)
        if found is not None:
            return found
        time.sleep(0.01)
    return None


def lab(runs=20, delay=0.02, report=print):
    """
    Connect two peers through two port-restricted cone NATs in the NAT lab,
    C{runs} times.

    @return: A L{dict} of figures, or with C{"unavailable"} saying why the
        lab cannot be built here.
    """
    try:
        from tests.natlab import Lab, labUnavailableReason
    except ImportError:
        return {"unavailable": "tests/natlab.py is not here (run from a clone)"}
    reason = labUnavailableReason()
    if reason is not None:
        return {"unavailable": reason}
    from bench import children
    from punchd.demo import twistdCommand

    twistd = twistdCommand() + ["--nodaemon", "--pidfile=", "--logger", "bench.timelog.observer"]
    server = f"{SERVER[0]}:{SERVER[1]}"
    results = []
    with children.Processes() as processes, Lab(
        natA="port-restricted-cone", natB="port-restricted-cone", delay=delay
    ) as natlab:

        def spawn(host, label, argv):
            out = open(processes.path(label), "wb")
            try:
                process = natlab.spawn(
                    host, argv, stdout=out, stderr=out, stdin=None, env=processes._env
                )
            finally:
                out.close()
            processes.children[label] = process
            return process

        spawn(
            "server",
            "lab-server",
            twistd + ["punch-server", "--interface", SERVER[0], "--port", str(SERVER[1])],
        )
        processes.waitFor("lab-server", _SERVER_UP, 30)
        for run in range(runs):
            a, b = f"a{run}", f"b{run}"
            spawn(
                "peerA",
                a,
                twistd
                + ["punch-peer", "--server", server, "--name", a, "--peer", b, "--port", str(40000 + run)],
            )
            if _waitFirst(processes, a, _REGISTERED, 20) is None:
                raise RuntimeError(f"peer {a} did not register: {processes.output(a)[-2000:]}")
            spawn(
                "peerB",
                b,
                twistd
                + ["punch-peer", "--server", server, "--name", b, "--peer", a, "--port", str(41000 + run)],
            )
            upA = _waitFirst(processes, a, _UP, 20)
            upB = _waitFirst(processes, b, _UP, 20)
            start = _first(processes, b, _LISTENING)
            answered = _first(processes, b, _REGISTERED)
            processes.stop(a)
            processes.stop(b)
            if None in (upA, upB, start, answered):
                results.append(None)
                report(run, None)
                continue
            figures = {
                "seconds": max(upA, upB) - start,
                "roundTrip": answered - start,
            }
            figures["roundTrips"] = figures["seconds"] / figures["roundTrip"]
            results.append(figures)
            report(run, figures)
    done = [r for r in results if r is not None]
    if not done:
        return {"failed": runs}
    return {
        "runs": runs,
        "failed": runs - len(done),
        "medianSeconds": statistics.median(r["seconds"] for r in done),
        "medianRoundTrip": statistics.median(r["roundTrip"] for r in done),
        "medianRoundTrips": statistics.median(r["roundTrips"] for r in done),
        "worstRoundTrips": max(r["roundTrips"] for r in done),
    }


def manyPorts(runs=20, latency=0.01, limit=15.0, sequential=False):
    """
    A symmetric NAT (alice) against a port-restricted cone one (bob), over
    the simulated network with a TURN relay on offer, both peers knowing
    their NATs: how often the many-port punch (L{punchd.hardnat}) comes up
    direct, how long after the introduction, and the datagrams and bytes
    each peer sends to the other's public IP for it, over C{runs} seeds.

    @param sequential: Whether alice's NAT allocates ports in sequence
        rather than at random.
    """
    from punchd.test.test_hardnat import hardWorld
    from punchd.testing import SEQUENTIAL

    settings = symmetric(allocation=SEQUENTIAL) if sequential else symmetric()
    direct, times, sent = 0, [], {"alice": [], "bob": []}
    for seed in range(runs):
        world = hardWorld(settings, portRestrictedCone(), seed=seed)
        up = {}
        for name in ("alice", "bob"):
            peer = getattr(world, name)

            # Direct at once, or moved off the relay.
            def pathUp(path, name=name, original=peer.pathUp):
                if path.kind != "relayed":
                    up.setdefault(name, world.clock.seconds())
                original(path)

            def pathMoved(path, previous, name=name, original=peer.pathMoved):
                if path.kind != "relayed":
                    up.setdefault(name, world.clock.seconds())
                original(path, previous)

            peer.pathUp, peer.pathMoved = pathUp, pathMoved
        start = world.clock.seconds()
        while len(up) < 2 and world.clock.seconds() - start < limit:
            world.network.advance(0.01)
        world.network.advance(limit - (world.clock.seconds() - start))
        introduced = min(
            d.time for d in world.network.traffic if d.delivered and _isIntroduction(d.data)
        )
        for name, host, other in (
            ("alice", world.aliceHost, "203.0.113.1"),
            ("bob", world.bobHost, "198.51.100.1"),
        ):
            toPeer = [
                d for d in world.network.traffic
                if d.sender is host and d.destination[0] == other
                and d.sentAt <= up.get(name, world.clock.seconds())
            ]
            sent[name].append((len(toPeer), sum(len(d.data) for d in toPeer)))
        if len(up) == 2:
            direct += 1
            times.append(max(up.values()) - introduced)
    median = lambda values: statistics.median(values) if values else None  # noqa: E731
    return {
        "runs": runs,
        "direct": direct,
        "seconds": median(times),
        "maxSeconds": max(times) if times else None,
        "sent": {
            name: {
                "datagrams": median([d for d, _ in values]),
                "bytes": median([b for _, b in values]),
                "maxDatagrams": max(d for d, _ in values),
            }
            for name, values in sent.items()
        },
    }
