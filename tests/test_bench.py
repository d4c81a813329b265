"""
The benchmarks still run: each part, briefly, gives its figures.  Nothing
here checks a figure against a goal; timing is for C{python -m bench}.
"""

import re
import sys
from io import StringIO

from twisted.trial.unittest import TestCase

from bench import __main__ as benchMain, children, connect, cost, growth, memory, profile
from punchd.test.optional import require
from punchd.testing import portRestrictedCone


def drive(processes, label, pattern, argv, kind, **settings):
    """
    Start a responder, drive it with the load generator for half a second
    and return the generator's figures.
    """
    pid, port = cost.start(processes, label, argv, pattern)
    brief = {"seconds": 0.5, "warmup": 0.1, "ports": 4, "window": 2}
    brief["names"] = settings.get("names", 40)
    return cost.drive(processes, label, pid, port, kind, brief)


class LoadTests(TestCase):
    """
    The load generator, the floor and the real server work together.
    """

    def test_floor(self):
        """
        The floor answers the load generator's Binding requests.
        """
        with children.Processes() as processes:
            figures = drive(
                processes,
                "floor",
                cost.FLOOR_LISTENING,
                children.python("bench.floor", "--seconds", 60),
                "binding",
            )
        self.assertGreater(figures["answered"], 0)
        self.assertGreater(figures["targetCpuSeconds"], 0)

    def test_server(self):
        """
        The real punch-server answers Binding requests, registrations of
        distinct names, their compact refreshes and first registrations,
        and its CPU time is read.
        """
        with children.Processes() as processes:
            for kind in cost.KINDS:
                figures = drive(
                    processes,
                    f"server-{kind}",
                    cost.SERVER_LISTENING,
                    # Room for every new name of the first registrations
                    # the warm-up and the run send: a full phonebook
                    # refuses them all.
                    cost.serverCommand(100000),
                    kind,
                )
                self.assertGreater(figures["answered"], 0, kind)
                self.assertIn("targetCpuMicrosecondsPerAnswer", figures)

    def test_onlyLoopback(self):
        """
        The load generator refuses a target off the loopback.
        """
        with children.Processes() as processes:
            processes.start(
                "load", children.python("bench.loadgen", "--target", "192.0.2.1:9")
            )
            processes.wait("load", 30)
            self.assertIn("loopback only", processes.output("load"))


class InProcessTests(TestCase):
    """
    The in-process benchmarks give figures.
    """

    def test_growth(self):
        """
        Growth gives microseconds per registration for each size.
        """
        results = growth.run([10, 100], datagrams=50, rounds=1, report=lambda *a: None)
        self.assertEqual(sorted(results), [10, 100])

    def test_memory(self):
        """
        Memory fills the phonebook with as many entries as asked.
        """
        self.assertEqual(memory.run(500)["entries"], 500)


class ConnectTests(TestCase):
    """
    The time-to-connect benchmark connects in the simulated network.
    """

    def test_simulated(self):
        """
        Two peers behind port-restricted cones connect, and what each sent
        between the introduction and the path is counted.
        """
        figures = connect.simulated(portRestrictedCone(), portRestrictedCone())
        self.assertNotIn("failed", figures)
        for peer in ("alice", "bob"):
            self.assertGreater(figures["cost"][peer]["datagrams"], 0)

    def test_timeLog(self):
        """
        The time log writes the monotonic time before each event.
        """
        from io import StringIO
        import sys

        from bench import timelog

        out = StringIO()
        original, sys.__stdout__ = sys.__stdout__, out
        try:
            timelog.observer()({"log_format": "hello {who}", "who": "world"})
        finally:
            sys.__stdout__ = original
        self.assertRegex(out.getvalue(), re.compile(r"^\d+\.\d{6} hello world\n$"))


class ProfileTests(TestCase):
    """
    The profile part of C{python -m bench}.
    """

    def test_withoutPySpy(self):
        """
        Without py-spy, the profile says which extra to install and returns,
        so that the other parts still run.
        """
        self.patch(profile, "pySpy", lambda: None)
        out = StringIO()
        self.patch(sys, "stdout", out)
        self.assertEqual(benchMain.profile(2), {"unavailable": profile.MISSING})
        self.assertIn(
            "not run: py-spy is not installed: pip install 'punchd[bench]'", out.getvalue()
        )


class WorkersTests(TestCase):
    """
    The registrations-a-second figure with several workers runs.
    """

    def test_workers(self):
        """
        With one and with two workers on a Redis of their own, first
        registrations are answered.
        """
        from punchd.test.redisserver import MISSING, redisServerPath

        require(self, redisServerPath() is not None, MISSING)
        from bench import workers

        brief = {"seconds": 0.5, "warmup": 0.1, "ports": 4, "window": 2, "names": 40}
        figures = workers.run(brief, report=lambda line: None)
        self.assertGreater(figures[1]["answered"], 0)
        self.assertGreater(figures[2]["answered"], 0)
