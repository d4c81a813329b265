"""
Profile the real server under the load generator with py-spy:

    pip install '.[bench]'      # py-spy
    python -m bench.profile [--kind binding|register] [--seconds 5] [--out DIR]

It starts C{twistd punch-server} on 127.0.0.1 and the load generator, as
benchmark 1 does, samples the server with C{py-spy record} while the load
runs, and prints the functions where the server spends its time: by their
own time, and with what they call.  The raw samples (collapsed stacks, for
flame graph tools) are kept in C{--out}.

Sampling slows the server down, so the figures of a profiled run are not
benchmark figures; and py-spy counts a call into the kernel as time in the
Python function that made it, so C{sendto} and C{recvfrom} show up as the
functions calling them.
"""

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys

from bench import children, cost


def summarise(path, top=20):
    """
    The functions of a collapsed-stack file by share of samples: their own
    and inclusive.
    """
    own = collections.Counter()
    inclusive = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip().rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            total += count
            frames = [re.sub(r":\d+\)$", ")", frame) for frame in stack.split(";")]
            own[frames[-1]] += count
            for frame in set(frames):
                inclusive[frame] += count
    lines = [f"{total} samples", "own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append("with what they call (from the protocol down):")
    lines += [
        f"  {100 * n / total:5.1f}%  {f}"
        for f, n in inclusive.most_common()
        if "punchd" in f or "udp.py" in f
    ][:top]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--kind", choices=("binding", "register"), default="register")
    parser.add_argument("--seconds", type=int, default=5, help="seconds to sample")
    parser.add_argument("--out", default=".", help="directory for the raw samples")
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if spy is None:
        parser.error("py-spy is not installed: pip install '.[bench]'")
    settings = dict(seconds=args.seconds + 3, warmup=1, ports=50, window=4, names=20000)
    output = os.path.join(args.out, f"server-{args.kind}.txt")
    with children.Processes() as processes:
        pid, port = cost.start(
            processes, "server", cost.serverCommand(100000), cost.SERVER_LISTENING
        )
        generator = processes.start(
            "load",
            children.python(
                "bench.loadgen",
                "--target",
                f"127.0.0.1:{port}",
                "--kind",
                args.kind,
                "--seconds",
                settings["seconds"],
                "--names",
                settings["names"],
            ),
        )
        # Past the warm-up (every name registered once) before sampling.
        processes.waitFor("load", re.compile("MEASURING"), 60)
        subprocess.run(
            [spy, "record", "--pid", str(pid), "--duration", str(args.seconds),
             "--rate", "500", "--format", "raw", "--output", output, "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=args.seconds + 30,
            check=True,
        )
        generator.wait(settings["seconds"] + 60)
    print(f"punch-server under {args.kind} load; raw samples in {output}")
    print(summarise(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
