"""
System tests: what a user gets from a plain C{pip install .}, without the
extras.  The wheel holds every module of C{punchd/} and the twistd plugins,
and nothing of C{tests/} or C{bench/}; and C{trial punchd} in a virtualenv
with nothing more installed passes, skipping the tests that need the C{test}
extra and saying how to install it.

Each test builds from a copy of this checkout, in a temporary directory it
removes, so that no C{build/} of the checkout's goes into the wheel or
comes out of it.  The virtualenv's dependencies come from the package
index: the second test takes a minute or so.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent

#: What a copy of the checkout leaves out: what building, testing and
#: virtualenvs leave behind.
LEFT_OUT = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "_trial_temp*", "__pycache__", ".hypothesis"
)

#: The skip reasons a plain install may give: a test that needs a package
#: of an extra names the package and the extra, and the one that runs
#: docs/example.py says that the example is in the source tree only.
EXTRA = re.compile(
    r"^(\S+ is not installed: pip install 'punchd\[(test|redis)\]'"
    r"|\S+/docs/example\.py is in punchd's source tree, not in an installed punchd)$"
)


def shipped():
    """
    The Python files a wheel of the checkout must hold: all of C{punchd/}
    and C{twisted/plugins/}.
    """
    return {
        path.relative_to(ROOT).as_posix()
        for top in ("punchd", "twisted/plugins")
        for path in (ROOT / top).rglob("*.py")
        if "__pycache__" not in path.parts
    }


class PlainInstallTests(SynchronousTestCase):
    """
    A plain C{pip install .}, as a new user makes it.
    """

    def setUp(self):
        self.scratch = Path(tempfile.mkdtemp(prefix="punchd-install-"))
        self.addCleanup(shutil.rmtree, self.scratch, ignore_errors=True)
        self.source = self.scratch / "source"
        shutil.copytree(ROOT, self.source, ignore=LEFT_OUT)

    def command(self, argv, **kwargs):
        """
        Run C{argv} to its end, failing the test if it fails.

        @return: Its standard output and error, together.
        """
        result = subprocess.run(
            [str(arg) for arg in argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            **kwargs,
        )
        if result.returncode != 0:
            self.fail(f"{argv} exited with {result.returncode}:\n{result.stdout}")
        return result.stdout

    def test_wheelShipsEveryModule(self):
        """
        The wheel holds every module of C{punchd/}, its subpackages and the
        twistd plugins, and no other Python file.
        """
        wheels = self.scratch / "wheels"
        self.command(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", wheels, self.source]
        )
        [wheel] = wheels.glob("punchd-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            modules = {name for name in archive.namelist() if name.endswith(".py")}
        expected = shipped()
        self.assertEqual(
            {"missing": sorted(expected - modules), "unexpected": sorted(modules - expected)},
            {"missing": [], "unexpected": []},
        )

    def test_trialPunchd(self):
        """
        In a virtualenv with only C{pip install .}, C{trial punchd} run
        from an empty directory passes; the tests that need an extra skip,
        each naming its package and the extra, and so does the one that
        needs the source tree.
        """
        venv = self.scratch / "venv"
        self.command([sys.executable, "-m", "venv", venv])
        self.command([venv / "bin" / "pip", "install", "-q", self.source])
        empty = self.scratch / "empty"
        empty.mkdir()
        # As a user runs it: not under CI, which fails a missing extra, and
        # with nothing of the checkout's on the path.
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTHONPATH")}
        output = self.command([venv / "bin" / "trial", "punchd"], cwd=empty, env=env)
        self.assertRegex(output, r"\nPASSED \(skips=\d+, successes=\d+\)\n$")
        reasons = re.findall(r"^\[SKIPPED\]\n(.*)$", output, re.MULTILINE)
        self.assertNotEqual(reasons, [])
        self.assertEqual([r for r in reasons if not EXTRA.match(r)], [])
