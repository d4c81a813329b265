"""
Registrations a second with C{punch-server --workers 1} and C{--workers 2}
on one port, sharing a phonebook in a C{redis-server} of their own (unix
socket, no persistence), driven by the load generator of L{bench.cost}
with first registrations of new names, each echoing its port's cookie.

    python -m bench.workers [--quick]

The stage managers, Redis and the load generator share the machine's
cores, so the figure says what this machine does, not what a worker does.
"""

import argparse

from bench import children
from bench.cost import SERVER_LISTENING, drive, loadSettings, serverCommand, start


def run(settings, counts=(1, 2), report=print):
    """
    @return: The load generator's figures by number of workers.
    """
    from punchd.test.redisserver import RedisServer

    results = {}
    redis = RedisServer(unix=True).start()
    try:
        with children.Processes() as processes:
            for workers in counts:
                label = f"workers-{workers}"
                room = int(200_000 * (settings["warmup"] + settings["seconds"] + 2))
                command = serverCommand(room, limits=False) + [
                    "--redis",
                    redis.url,
                    "--workers",
                    str(workers),
                ]
                pid, port = start(processes, label, command, SERVER_LISTENING)
                results[workers] = f = drive(processes, label, pid, port, "first", settings)
                report(
                    f"--workers {workers}: {f['answeredPerSecond']:.0f} first registrations a"
                    f" second, loss {100 * (f['loss'] or 0):.2f} %, p50 {f['p50ms']:.1f} ms"
                )
                processes.stop(label)
                redis.command("FLUSHALL")
    finally:
        redis.cleanup()
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.workers")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(loadSettings(args.quick))


if __name__ == "__main__":
    main()
