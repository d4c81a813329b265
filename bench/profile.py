"""
Profile the real server under the load generator with py-spy:

    pip install '.[bench]'      # py-spy
    python -m bench.profile [--kind binding|register|refresh|first] [--seconds 5] [--out DIR]

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


#: Why there is no profile without py-spy.
MISSING = "py-spy is not installed: pip install 'punchd[bench]'"


def pySpy():
    """
    The path of py-spy: beside this Python (in its virtualenv) or on the
    C{PATH}.

    @return: The path, or L{None} if it is not installed.
    """
    return shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")


def record(spy, kind, seconds, out):
    """
    Sample a real server with the py-spy at C{spy} for C{seconds} while the
    load generator sends it requests of C{kind}.

    @return: The path of the raw samples (collapsed stacks), in C{out}.
    """
    settings = dict(cost.loadSettings(), seconds=seconds + 3)
    output = os.path.join(out, f"server-{kind}.txt")
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
                kind,
                "--seconds",
                settings["seconds"],
                "--names",
                settings["names"],
            ),
        )
        # Past the warm-up (every name registered once) before sampling.
        processes.waitFor("load", re.compile("MEASURING"), 60)
        subprocess.run(
            [spy, "record", "--pid", str(pid), "--duration", str(seconds),
             "--rate", "500", "--format", "raw", "--output", output, "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=seconds + 30,
            check=True,
        )
        generator.wait(settings["seconds"] + 60)
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("--kind", choices=("binding", "register", "refresh", "first"), default="register")
    parser.add_argument("--seconds", type=int, default=5, help="seconds to sample")
    parser.add_argument("--out", default=".", help="directory for the raw samples")
    args = parser.parse_args(argv)
    spy = pySpy()
    if spy is None:
        parser.error(MISSING)
    output = record(spy, args.kind, args.seconds, args.out)
    print(f"punch-server under {args.kind} load; raw samples in {output}")
    print(summarise(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
