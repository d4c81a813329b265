"""
Benchmark 1: the server's cost per datagram, against the floor.

The real C{twistd -n punch-server} and the floor responder
(L{bench.floor}) each run as a process of their own on 127.0.0.1, and the
load generator (L{bench.loadgen}), a third process, drives them in turn
with the same ports and windows.  The server's CPU time is read from
C{/proc/PID/stat} over the measured window; the headline figure is its CPU
per answered request divided by the floor's.
"""

import json
import re

from bench import children
from punchd.demo import twistdCommand

#: What the stage manager prints once it listens; the group is its port.
SERVER_LISTENING = re.compile(r"Stage manager listening on 127\.0\.0\.1:(\d+)")
#: What the floor prints once it listens; the group is its port.
FLOOR_LISTENING = re.compile(r"floor listening on 127\.0\.0\.1:(\d+)")

#: The server's per-source rate limits in the benchmark: requests a second.
RATE = 10_000_000

def loadSettings(quick: bool = False) -> dict:
    """
    The load generator's settings every cost benchmark drives with:
    seconds measured after a warm-up, source ports, requests outstanding
    on each, and distinct names; shorter and smaller with C{quick}.
    """
    if quick:
        return dict(seconds=3, warmup=1, ports=50, window=4, names=10000)
    return dict(seconds=6, warmup=1, ports=50, window=4, names=20000)


#: The kinds of request measured: Binding requests, full registrations
#: refreshing a name, compact refreshes, first registrations.
KINDS = ("binding", "register", "refresh", "first")


def drive(processes, label, pid, port, kind, settings):
    """
    Drive the responder C{label} (process C{pid}, on C{port}) with the load
    generator, sending requests of C{kind} ("binding" or "register") as
    C{settings} say.

    @return: The load generator's figures.
    """
    generator = f"load-{label}-{kind}"
    processes.start(
        generator,
        children.python(
            "bench.loadgen",
            "--target",
            f"127.0.0.1:{port}",
            "--kind",
            kind,
            "--cpu-pid",
            pid,
            "--seconds",
            settings["seconds"],
            "--warmup",
            settings["warmup"],
            "--ports",
            settings["ports"],
            "--window",
            settings["window"],
            "--names",
            settings["names"],
        ),
    )
    processes.wait(generator, settings["warmup"] + settings["seconds"] + 90)
    for line in processes.output(generator).splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(
        f"the load generator gave no result: {processes.output(generator)[-2000:]}"
    )


def start(processes, label, argv, pattern):
    """
    Start the responder C{label} with C{argv} and wait until it prints
    C{pattern}, whose group is the port it listens on.

    @return: Its pid and port.
    """
    process = processes.start(label, argv)
    match = processes.waitFor(label, pattern, 30)
    return process.pid, int(match.group(1))


def serverCommand(maxClients, limits=True):
    """
    The real stage manager, as an operator runs it, on a free loopback port.

    @param limits: Whether the per-source rate limits are on (set so high
        that they never refuse: the load comes from few addresses), so that
        they cost what they cost; or off.
    """
    rate = str(RATE if limits else 0)
    return twistdCommand() + [
        "--nodaemon",
        "--pidfile=",
        "punch-server",
        "--interface",
        "127.0.0.1",
        "--port",
        "0",
        "--max-clients",
        str(maxClients),
        # The load generator registers hundreds of names from each of its
        # ports, as no peer does.
        "--max-names-per-address",
        str(maxClients),
        "--max-names-per-ip",
        str(maxClients),
        "--registration-rate",
        rate,
        "--binding-rate",
        rate,
    ]


def run(settings, report):
    """
    Measure the floor, then the server with each kind of request, with the
    per-source rate limits on and then off; call
    C{report(target, kind, figures)} as each measurement ends, and return
    every figure by C{(target, kind)}.
    """
    results = {}
    lifetime = int(3 * (settings["warmup"] + settings["seconds"]) + 120)
    with children.Processes() as processes:
        pid, port = start(
            processes,
            "floor",
            children.python("bench.floor", "--seconds", lifetime),
            FLOOR_LISTENING,
        )
        results["floor", "binding"] = drive(processes, "floor", pid, port, "binding", settings)
        report("floor", "binding", results["floor", "binding"])
        processes.stop("floor")
        for target, limits in (("server", True), ("no limits", False)):
            for kind in settings.get("kinds", KINDS):
                label = f"{target.replace(' ', '-')}-{kind}"
                # First registrations fill the phonebook with a name each.
                room = max(100000, 2 * settings["names"])
                if kind == "first":
                    room = max(room, 200_000 * (settings["warmup"] + settings["seconds"] + 2))
                pid, port = start(
                    processes,
                    label,
                    serverCommand(int(room), limits),
                    SERVER_LISTENING,
                )
                results[target, kind] = drive(processes, label, pid, port, kind, settings)
                results[target, kind]["logBytes"] = len(processes.output(label))
                report(target, kind, results[target, kind])
                processes.stop(label)
    return results
