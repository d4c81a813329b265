"""
CPU per refresh with the phonebook in memory and in Redis, against the
floor, with Redis's own CPU beside.

    python -m bench.rediscost [--quick]

As L{bench.cost}: the floor, then the real C{twistd punch-server} with its
rate limits off, in memory and then with C{--redis} on a C{redis-server}
of its own (unix socket, no persistence), each driven by the load
generator with refreshes of distinct names: full registrations echoing
their cookies, and compact C{REFRESH}es.  Redis's CPU (C{INFO cpu}) over
the same window is reported per refresh beside the stage manager's.
"""

import argparse

from bench import children
from bench.cost import (
    FLOOR_LISTENING,
    SERVER_LISTENING,
    drive,
    loadSettings,
    serverCommand,
    start,
)


#: The kinds of refresh measured (L{bench.loadgen}'s), and their names.
KINDS = {"register": "full registration", "refresh": "compact refresh"}


def redisCpu(server):
    fields = server.info("cpu")
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


def run(settings, report=print):
    from punchd.test.redisserver import RedisServer

    results = {}
    lifetime = int(3 * (settings["warmup"] + settings["seconds"]) + 120)
    redis = RedisServer(unix=True).start()
    try:
        with children.Processes() as processes:
            pid, port = start(
                processes,
                "floor",
                children.python("bench.floor", "--seconds", lifetime),
                FLOOR_LISTENING,
            )
            results["floor"] = drive(processes, "floor", pid, port, "binding", settings)
            processes.stop("floor")
            for target, extra in (("in memory", []), ("redis", ["--redis", redis.url])):
                for kind in KINDS:
                    label = f"{target.replace(' ', '-')}-{kind}"
                    command = serverCommand(max(100000, 2 * settings["names"]), limits=False)
                    pid, port = start(processes, label, command + extra, SERVER_LISTENING)
                    before = redisCpu(redis)
                    f = drive(processes, label, pid, port, kind, settings)
                    results.setdefault(target, {})[kind] = f
                    # Over the warm-up and the measured window: an upper bound.
                    answered = f["answeredPerSecond"] * settings["seconds"]
                    f["redisCpuMicrosecondsPerAnswer"] = (
                        1e6 * (redisCpu(redis) - before) / answered if answered else None
                    )
                    processes.stop(label)
                    # Each run on a Redis emptied of the last one's names.
                    redis.command("FLUSHALL")
    finally:
        redis.cleanup()
    floor = results["floor"]["targetCpuMicrosecondsPerAnswer"]
    for target, kind in ((t, k) for t in ("in memory", "redis") for k in KINDS):
        f = results[target][kind]
        f["overFloor"] = f["targetCpuMicrosecondsPerAnswer"] / floor
        redisPart = f["redisCpuMicrosecondsPerAnswer"]
        report(
            f"{target:<10} {KINDS[kind]:<17} {f['answeredPerSecond']:.0f}/s,"
            f" loss {100 * f['loss']:.2f} %, p50 {f['p50ms']:.1f} ms; stage manager"
            f" {f['targetCpuMicrosecondsPerAnswer']:.1f} us CPU a refresh,"
            f" {f['overFloor']:.2f}x the floor's {floor:.1f} us"
            + ("" if target != "redis" else f"; redis-server {redisPart:.1f} us beside")
        )
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.rediscost")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    return run(loadSettings(args.quick))


if __name__ == "__main__":
    main()
