"""
System test: docs/example.py, the API's runnable example, as two real
processes through a real C{twistd punch-server} on 127.0.0.1.
"""

import os
import re
import sys

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from tests.processes import ROOT, TREE_TWISTD, startServer, waitFor

EXAMPLE = os.path.join(ROOT, "docs", "example.py")


class ExampleTests(TestCase):
    """
    The example, as README.rst runs it.
    """

    def test_pings(self):
        """
        Two copies of the example, alice and bob, each say the path is up,
        get three answers to their pings, and exit.
        """
        with Processes() as processes:
            (_, port), _ = startServer(self, processes, [], twistd=TREE_TWISTD)
            server = f"127.0.0.1:{port}"
            for name, other in (("alice", "bob"), ("bob", "alice")):
                processes.start(
                    name,
                    [sys.executable, EXAMPLE, "--server", server, "--name", name, "--peer", other],
                )
            patterns = {
                (name, what): re.compile(pattern)
                for name, other in (("alice", "bob"), ("bob", "alice"))
                for what, pattern in (
                    ("up", f"Path to {other} up: local, round trip"),
                    ("answers", f"{other} answered: pong 3"),
                )
            }
            seen, lines = waitFor(processes, patterns, 20)
            self.assertEqual(len(seen), 4, f"the example did not run: {lines}")
            for name in ("alice", "bob"):
                self.assertEqual(processes.children[name].wait(10), 0, name)
            processes.stop("server")
