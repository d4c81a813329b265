"""
Child processes for the benchmarks: each writes its output to a file of its
own in a temporary directory, so that nobody has to read a pipe while the
load runs (a reader would be one more busy process on the machine), and all
are stopped, by pid, when the block ends; the directory goes too.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

from punchd import demo


def childEnvironment():
    """
    The environment for children: this one, with the directory holding the
    C{punchd} and C{bench} packages this process imported first on the path,
    so the children run the same code (from a checkout or an installation).
    """
    import bench
    import punchd

    env = dict(os.environ)
    roots = []
    for package in (punchd, bench):
        root = os.path.dirname(os.path.dirname(os.path.abspath(package.__file__)))
        if root not in roots:
            roots.append(root)
    previous = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(roots + ([previous] if previous else []))
    return env


class Processes(demo.Processes):
    """
    Children whose output goes to files, stopped by pid at the end as
    L{punchd.demo.Processes} stops them; with no pipes, L{lines} reads
    nothing: L{output} and L{waitFor} read the files.
    """

    def __init__(self):
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="punchd-bench-")
        self._env = childEnvironment()

    def __exit__(self, *exc):
        super().__exit__(*exc)
        shutil.rmtree(self.directory, ignore_errors=True)

    def path(self, label):
        return os.path.join(self.directory, label + ".out")

    def start(self, label, argv, **kwargs):
        """
        Start C{argv} as the child C{label}, its output to L{path}.
        """
        with open(self.path(label), "wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                **kwargs,
            )
        self.children[label] = process
        return process

    def output(self, label):
        try:
            with open(self.path(label), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def waitFor(self, label, pattern, seconds):
        """
        Wait until C{pattern} matches a line of C{label}'s output, or the
        child exits, or C{seconds} pass.

        @return: The match.
        @raise RuntimeError: If it never matched.
        """
        deadline = time.monotonic() + seconds
        process = self.children[label]
        while time.monotonic() < deadline:
            match = pattern.search(self.output(label))
            if match:
                return match
            if process.poll() is not None:
                break
            time.sleep(0.02)
        tail = self.output(label)[-2000:]
        raise RuntimeError(f"{label} did not print {pattern.pattern!r}; it said:\n{tail}")

    def wait(self, label, seconds):
        """
        Wait for C{label} to exit; kill it after C{seconds}.

        @return: Its exit code.
        """
        process = self.children[label]
        try:
            return process.wait(seconds)
        except subprocess.TimeoutExpired:
            self.stop(label)
            raise RuntimeError(f"{label} ran longer than {seconds} s and was stopped") from None


def python(module, *args):
    """
    The argv that runs C{python -m module args} with this interpreter.
    """
    return [sys.executable, "-m", module, *map(str, args)]
