"""
A demonstration on this machine: a stage manager and two peers, alice and
bob, as three real C{twistd} processes on 127.0.0.1, their logs interleaved.

    python -m punchd.demo [--seconds N]

On one machine there is no NAT to punch through, but everything else is as
it is across the internet: registration, introduction, probes, the direct
path and the direct messages, which never pass through the stage manager.
"""

import argparse
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections import deque

_LISTENING = re.compile(r"Stage manager listening on \S+:(\d+)")
_TIMESTAMP = re.compile(r"^\S+ \[[^\]]*\] ")


def twistdCommand():
    """
    The command that runs C{twistd} with this Python.
    """
    beside = shutil.which("twistd", path=os.path.dirname(sys.executable))
    if beside is not None:
        return [beside]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class Processes:
    """
    Child processes whose output is read line by line, and that are all
    stopped, by pid, when the block ends.
    """

    def __init__(self):
        self._selector = selectors.DefaultSelector()
        self._pending = deque()
        self.children = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stopAll()

    def start(self, label, argv):
        """
        Start C{argv} as the process called C{label}.
        """
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.children[label] = process
        os.set_blocking(process.stdout.fileno(), False)
        self._selector.register(process.stdout, selectors.EVENT_READ, [label, b""])
        return process

    def lines(self, deadline):
        """
        Yield C{(label, line)} for every line any child prints, until the
        C{time.monotonic()} deadline.

        A caller may stop reading at any line: the lines read but not yet
        yielded (more than one may come in one read) wait for the next
        call.
        """
        while True:
            while self._pending:
                yield self._pending.popleft()
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.get_map():
                return
            for key, _ in self._selector.select(remaining):
                state = key.data
                chunk = key.fileobj.read()
                if not chunk:
                    self._selector.unregister(key.fileobj)
                    if state[1]:
                        self._pending.append((state[0], state[1].decode("utf-8", "replace")))
                    continue
                state[1] += chunk
                *complete, state[1] = state[1].split(b"\n")
                for line in complete:
                    self._pending.append((state[0], line.decode("utf-8", "replace")))

    def stop(self, label, timeout=5.0):
        """
        Stop one child with SIGTERM, then SIGKILL if it lingers.
        """
        process = self.children[label]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stopAll(self):
        for label in list(self.children):
            self.stop(label)
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            key.fileobj.close()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m punchd.demo",
        description="Run a stage manager and two peers on 127.0.0.1 and show their logs.",
    )
    parser.add_argument(
        "--seconds", type=float, default=4.0, help="how long the peers talk (default 4)"
    )
    args = parser.parse_args(argv)
    twistd = twistdCommand() + ["--nodaemon", "--pidfile="]
    width = len("server")
    with Processes() as processes:
        processes.start(
            "server", twistd + ["punch-server", "--interface", "127.0.0.1", "--port", "0"]
        )
        port = None
        deadline = time.monotonic() + 15
        for label, line in processes.lines(deadline):
            print(f"{label:>{width}} | {_TIMESTAMP.sub('', line)}", flush=True)
            match = _LISTENING.search(line)
            if match:
                port = int(match.group(1))
                break
        if port is None:
            print("The stage manager did not start; its output is above.", file=sys.stderr)
            return 1
        server = f"127.0.0.1:{port}"
        for name, wants in (("alice", "bob"), ("bob", "alice")):
            processes.start(
                name,
                twistd + ["punch-peer", "--server", server, "--name", name, "--peer", wants],
            )
        deadline = time.monotonic() + args.seconds + 2
        for label, line in processes.lines(deadline):
            print(f"{label:>{width}} | {_TIMESTAMP.sub('', line)}", flush=True)
        for label in ("alice", "bob", "server"):
            processes.stop(label)
        for label, line in processes.lines(time.monotonic() + 2):
            print(f"{label:>{width}} | {_TIMESTAMP.sub('', line)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
