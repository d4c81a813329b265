"""
Run every punchd benchmark and print the figures:

    python -m bench [--quick] [--only cost,profile,growth,memory,connect,redis,workers]
        [--repeat N] [--json FILE]

See README.rst, "Performance", for what each one measures.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

GOALS = {
    "binding": 1.4,
    "register": 2.0,
    "refresh": 1.5,
    "first": 3.0,
    "growth": 1.2,
    "memory": 400,
    "roundTrips": 3.0,
    "crossServerMs": 2.0,
}

PARTS = ("cost", "profile", "growth", "memory", "connect", "redis", "workers")


def _met(ok):
    return "met" if ok else "NOT met"


def _print(*args):
    print(*args, flush=True)


def machine():
    import twisted

    return (
        f"{os.cpu_count()} cores, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, Twisted {twisted.__version__}"
    )


def cost(settings, repeat):
    from bench import cost as costBench

    _print()
    _print(
        "1. Server cost per datagram: the real twistd punch-server and the floor"
        " (a bare recvfrom/sendto loop), each its own process on 127.0.0.1,"
    )
    _print(
        f"   driven by the load generator (a third process): {settings['ports']} source ports,"
        f" {settings['window']} requests outstanding on each, {settings['seconds']} s measured"
        f" after {settings['warmup']} s of warm-up, {repeat} run(s) each, medians shown."
    )
    _print(
        "   Server CPU is user+system time from /proc/PID/stat over the measured window;"
        f" registrations: {settings['names']} distinct names, each refreshed from its own port,"
        " echoing its cookie."
    )
    _print(
        "   'server': the per-source rate limits on, so high that they never refuse;"
        " 'no limits': --registration-rate 0 --binding-rate 0."
    )
    header = (
        f"   {'target':<14}{'requests':<10}{'answered/s':>11}{'loss %':>8}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'CPU us/ans':>11}{'CPU busy':>9}"
    )
    runs = {}

    def report(target, kind, figures):
        runs.setdefault((target, kind), []).append(figures)
        _print(
            f"   run: {target} {kind}: {figures['answeredPerSecond']:.0f}/s,"
            f" {figures['targetCpuMicrosecondsPerAnswer']:.2f} us CPU per answer"
        )

    for _ in range(repeat):
        costBench.run(settings, report)
    _print(header)
    medians = {}
    for (target, kind), figures in runs.items():
        m = {
            key: statistics.median(f[key] for f in figures)
            for key in (
                "answeredPerSecond",
                "loss",
                "p50ms",
                "p99ms",
                "targetCpuMicrosecondsPerAnswer",
                "targetCpuUtilisation",
            )
        }
        medians[target, kind] = m
        _print(
            f"   {target:<14}{kind:<10}{m['answeredPerSecond']:>11.0f}{100 * m['loss']:>8.3f}"
            f"{m['p50ms']:>8.2f}{m['p99ms']:>8.2f}{m['targetCpuMicrosecondsPerAnswer']:>11.2f}"
            f"{100 * m['targetCpuUtilisation']:>8.0f}%"
        )
    # Each run measures the floor and then the server, back to back: the
    # ratio of each run, then their median, so that a change in the
    # machine's load between runs falls on both sides of a ratio alike.
    ratios = {}
    for target, how in (("server", "rate limits on"), ("no limits", "rate limits off")):
        for kind in costBench.KINDS:
            paired = [
                server["targetCpuMicrosecondsPerAnswer"] / floor["targetCpuMicrosecondsPerAnswer"]
                for floor, server in zip(runs["floor", "binding"], runs[target, kind])
            ]
            ratios[f"{target} {kind}"] = ratio = statistics.median(paired)
            _print(
                f"   punch-server ({how}) CPU per {kind} request / the floor's: {ratio:.2f}x"
                f" (runs: {', '.join(f'{r:.2f}' for r in paired)};"
                f" goal at most {GOALS[kind]}x: {_met(ratio <= GOALS[kind])})"
            )
    return {
        "runs": {f"{t} {k}": v for (t, k), v in runs.items()},
        "median": {f"{t} {k}": v for (t, k), v in medians.items()},
        "ratioToFloor": ratios,
    }


def profile(seconds):
    from bench import profile as profileBench

    _print()
    _print(
        "Profile: where the real server's time goes under the registration load of benchmark 1,"
        f" sampled with py-spy for {seconds} s (python -m bench.profile)."
    )
    spy = profileBench.pySpy()
    if spy is None:
        _print(f"   not run: {profileBench.MISSING}")
        return {"unavailable": profileBench.MISSING}
    with tempfile.TemporaryDirectory() as out:
        try:
            summary = profileBench.summarise(profileBench.record(spy, "register", seconds, out))
        except subprocess.CalledProcessError as e:
            # py-spy may not trace another process here (ptrace is refused).
            _print(f"   not run: py-spy failed ({e})")
            return {"unavailable": str(e)}
    for line in summary.splitlines():
        _print(f"   {line}")
    return {"summary": summary}


def growth(sizes):
    from bench import growth as growthBench

    _print()
    _print(
        "2. Cost growth: CPU per registration datagram with N live entries in the phonebook,"
    )
    _print(
        "   in this process: StageManagerProtocol.datagramReceived on a transport that sends"
        " nothing (decode, phonebook update, answer; no socket calls), refreshes of peers"
        " drawn at random from the book; best of 5 passes, the sizes taken in turn."
    )
    _print(f"   {'entries':>10}{'us/registration':>17}{'vs first':>10}")
    results = {}

    def report(size, us):
        results[size] = us
        _print(f"   {size:>10}{us:>17.2f}{us / results[sizes[0]]:>9.2f}x")

    growthBench.run(sizes, report=report)
    ratio = results[sizes[-1]] / results[sizes[0]]
    _print(
        f"   {sizes[-1]} entries cost {ratio:.2f}x what {sizes[0]} cost"
        f" (goal at most {GOALS['growth']}x from 1 thousand to 1 million:"
        f" {_met(ratio <= GOALS['growth']) if sizes[-1] >= 1000000 else 'not measured in --quick'})"
    )
    return {"microseconds": results, "ratio": ratio}


def memory(entries):
    from bench import memory as memoryBench

    _print()
    _print(
        f"3. Memory: resident memory growth of this process while a stage manager takes"
        f" {entries} registrations of distinct peers through datagramReceived,"
    )
    _print(
        "   per live entry (12-character names, each wanting another registered peer,"
        " distinct public IPv4 addresses, one local address each)."
    )
    figures = memoryBench.run(entries)
    _print(
        f"   {figures['entries']} entries: {figures['bytes'] / 2**20:.1f} MiB,"
        f" {figures['bytesPerEntry']:.0f} bytes each (goal at most {GOALS['memory']} at 1 million:"
        f" {_met(figures['bytesPerEntry'] <= GOALS['memory']) if entries >= 1000000 else 'not measured in --quick'})"
    )
    return figures


def connect(labRuns):
    from bench import connect as connectBench

    _print()
    _print(
        "4. Time to connect: from the second peer's first registration to a direct path up"
        " on both sides, in peer-to-stage-manager round trips."
    )
    _print(
        "   Simulated network (punchd.testing), 50 ms every link: a round trip to the stage"
        " manager is 300 ms, one between the peers 400 ms."
    )
    _print(
        "5. Punch cost: datagrams and bytes (UDP payload) each peer sends from the moment"
        " the introduction reaches it to its path up (simulated network)."
    )
    _print(
        f"   {'NAT of alice':<22}{'NAT of bob':<22}{'ms':>6}{'round trips':>13}"
        f"{'alice sends':>18}{'bob sends':>18}"
    )
    simulated = {}
    pairs = [(nameA, natA, nameB, natB, None) for nameA, natA, nameB, natB in connectBench.NAT_PAIRS]
    # The same pair again with a secret the peers share: derived names and
    # punch keys should cost nothing on the way.
    nameA, natA, nameB, natB = connectBench.NAT_PAIRS[2]
    pairs.append((nameA, natA, nameB + " +secret", natB, b"a shared secret of the two peers"))
    for nameA, natA, nameB, natB, peerSecret in pairs:
        figures = connectBench.simulated(natA, natB, peerSecret=peerSecret)
        simulated[f"{nameA} / {nameB}"] = figures
        if figures.get("failed"):
            _print(f"   {nameA:<22}{nameB:<22}  did not connect")
            continue
        sends = [
            f"{figures['cost'][p]['datagrams']} dg {figures['cost'][p]['bytes']} B"
            for p in ("alice", "bob")
        ]
        _print(
            f"   {nameA:<22}{nameB:<22}{1000 * figures['seconds']:>6.0f}"
            f"{figures['roundTrips']:>13.2f}{sends[0]:>18}{sends[1]:>18}"
        )
    worst = max(f["roundTrips"] for f in simulated.values() if not f.get("failed"))
    _print(
        f"   Most round trips: {worst:.2f} (goal at most {GOALS['roundTrips']}:"
        f" {_met(worst <= GOALS['roundTrips'] + 1e-9)})"
    )
    for sequential in (False, True):
        many = connectBench.manyPorts(sequential=sequential)
        simulated["symmetric (%s) / port-restricted cone, many ports" % (
            "sequential" if sequential else "random")] = many
        _print(
            f"   symmetric ({'sequential' if sequential else 'random'} ports) / port-restricted"
            f" cone, many-port punch: direct in {many['direct']} of {many['runs']} seeds,"
            f" median {1000 * many['seconds']:.0f} ms after the introduction (at most"
            f" {1000 * many['maxSeconds']:.0f}); to the peer's IP alice sends"
            f" {many['sent']['alice']['datagrams']:.0f} dg {many['sent']['alice']['bytes']:.0f} B,"
            f" bob {many['sent']['bob']['datagrams']:.0f} dg {many['sent']['bob']['bytes']:.0f} B"
            f" (medians; bob at most {many['sent']['bob']['maxDatagrams']} dg)"
        )
    _print(
        f"   Real NAT lab (tests/natlab.py), two port-restricted cone NATs, 20 ms a link,"
        f" real twistd processes, median of {labRuns} runs:"
    )

    def report(run, figures):
        if figures is None:
            _print(f"   run {run}: no path up within 20 s")

    lab = connectBench.lab(runs=labRuns, report=report)
    if "unavailable" in lab:
        _print(f"   not measured: this figure needs root and the NAT lab ({lab['unavailable']})")
    elif "medianRoundTrips" in lab:
        _print(
            f"   {1000 * lab['medianSeconds']:.0f} ms, {lab['medianRoundTrips']:.2f} round trips"
            f" of {1000 * lab['medianRoundTrip']:.0f} ms (worst {lab['worstRoundTrips']:.2f});"
            f" {lab['failed']} of {lab['runs']} runs failed"
            f" (goal at most {GOALS['roundTrips']}: {_met(lab['medianRoundTrips'] <= GOALS['roundTrips'])})"
        )
    else:
        _print(f"   every run failed: {lab}")
    return {"simulated": simulated, "lab": lab}


def redis(entries, runs, settings):
    from importlib.util import find_spec

    from punchd.test.redisserver import MISSING, redisServerPath

    _print()
    _print(
        "6. The shared phonebook in Redis (punch-server --redis): a redis-server of its own,"
        " on a unix socket, no persistence."
    )
    missing = [p for p in ("txredisapi", "redis") if find_spec(p) is None]
    if redisServerPath() is None or missing:
        why = MISSING if redisServerPath() is None else (
            f"{', '.join(missing)} not installed: pip install '.[bench]'"
        )
        _print(f"   not run: {why}")
        return {"unavailable": why}
    from bench import crossintro, rediscost, redismemory

    _print(
        "   CPU per refresh, as in benchmark 1 (rate limits off), the phonebook in memory and in"
        " Redis, with Redis's CPU beside:"
    )
    cost = rediscost.run(settings, report=lambda line: _print(f"   {line}"))
    figures = redismemory.run(entries)
    _print(
        f"   Memory: {figures['entries']} entries registered through the register script,"
        f" {figures['bytesPerEntry']:.0f} bytes each in Redis's used_memory"
        f" ({figures['rssBytesPerEntry']:.0f} resident; goal at most {GOALS['memory']} at 1 million:"
        f" {_met(figures['bytesPerEntry'] <= GOALS['memory']) if entries >= 1000000 else 'not measured in --quick'})"
    )
    latency = crossintro.run(runs)
    for kind in ("local", "cross-server"):
        f = latency[kind]
        _print(
            f"   {kind} introduction, from the second peer's registration sent to the first"
            f" peer's introduction received: median {f['medianMs']:.2f} ms,"
            f" 90th percentile {f['p90Ms']:.2f} ms ({f['runs']} runs)"
        )
    _print(
        f"   A cross-server introduction adds {latency['addedMs']:.2f} ms"
        f" (goal at most {GOALS['crossServerMs']} ms: {_met(latency['addedMs'] <= GOALS['crossServerMs'])})"
    )
    return {"cost": cost, "memory": figures, "crossServer": latency}


def workers(settings):
    from importlib.util import find_spec

    from punchd.test.redisserver import MISSING, redisServerPath

    _print()
    _print(
        "7. Registrations a second with punch-server --workers 1 and --workers 2 --redis"
        " (a redis-server of its own, unix socket), first registrations of new names;"
    )
    _print("   the workers, Redis and the load generator share this machine's cores.")
    if redisServerPath() is None or find_spec("txredisapi") is None:
        why = MISSING if redisServerPath() is None else "txredisapi not installed: pip install '.[bench]'"
        _print(f"   not run: {why}")
        return {"unavailable": why}
    from bench import workers as workersBench

    return workersBench.run(settings, report=lambda line: _print(f"   {line}"))


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run punchd's benchmarks and print the figures."
    )
    parser.add_argument(
        "--quick", action="store_true", help="shorter runs and smaller phonebooks (about a minute)"
    )
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts to run, of {','.join(PARTS)}"
    )
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs of the cost part (default 5, 1 with --quick)"
    )
    args = parser.parse_args(argv)
    only = [p for p in args.only.split(",") if p]
    unknown = set(only) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if args.quick:
        repeat, sizes, entries, labRuns, sampled = 1, [1000, 100000], 100000, 5, 2
        redisEntries, crossRuns = 100000, 50
    else:
        repeat, sizes, entries, labRuns, sampled = 5, [1000, 100000, 1000000], 1000000, 20, 5
        redisEntries, crossRuns = 1000000, 200
    from bench.cost import loadSettings

    settings = loadSettings(args.quick)
    if args.repeat is not None:
        repeat = max(1, args.repeat)
    started = time.monotonic()
    _print(f"punchd benchmarks{' (--quick)' if args.quick else ''} on {machine()}")
    results = {"machine": machine(), "quick": args.quick}
    if "cost" in only:
        results["cost"] = cost(settings, repeat)
    if "profile" in only:
        results["profile"] = profile(sampled)
    if "growth" in only:
        results["growth"] = growth(sizes)
    if "memory" in only:
        results["memory"] = memory(entries)
    if "connect" in only:
        results["connect"] = connect(labRuns)
    if "redis" in only:
        results["redis"] = redis(redisEntries, crossRuns, settings)
    if "workers" in only:
        results["workers"] = workers(settings)
    _print()
    _print(f"Done in {time.monotonic() - started:.0f} s.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
