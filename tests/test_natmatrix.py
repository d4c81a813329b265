"""
Tests for the NAT lab's matrix runner, L{tests.natmatrix}: its command line
and its lines of figures (the runs themselves are the lab tests').
"""

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from tests.natmatrix import HEADER, Options, _line, expectedPaths


class OptionsTests(SynchronousTestCase):
    def test_badOptionsNamed(self):
        """
        A bad option is a usage error that names it.
        """
        for argv, message in (
            (["--pair", "symmetric:cone"], "--pair: 'cone' is not one of"),
            (["--runs", "0"], "--runs must be at least 1, not 0"),
            (["--no-turn", "--both"], "--no-turn and --both exclude each other"),
        ):
            options = Options()
            e = self.assertRaises(usage.UsageError, options.parseOptions, argv)
            self.assertIn(message, str(e))

    def test_otherNATTypes(self):
        """
        C{--pair} takes the lab's NAT types beyond the matrix's, such as the
        sequential one.
        """
        options = Options()
        options.parseOptions(["--pair", "symmetric-sequential:port-restricted-cone"])
        self.assertEqual(options["pairs"], [("symmetric-sequential", "port-restricted-cone")])


class LineTests(SynchronousTestCase):
    def test_figures(self):
        """
        A pair's line gives the runs that went as expected, the median
        times from the start and from the introduction, the slowest from the
        introduction, and the datagrams, in the header's columns.
        """
        line = _line(
            {
                "pair": "symmetric / port-restricted-cone",
                "turn": False,
                "ok": 19,
                "runs": 20,
                "expected": " / ".join(expectedPaths("symmetric", "port-restricted-cone")),
                "fromStart": 3.82,
                "fromIntroduction": 3.29,
                "worstFromIntroduction": 4.71,
                "alice": 290,
                "bob": 322,
                "others": [("relayed", "relayed")],
            }
        )
        self.assertRegex(
            line,
            r"^symmetric / port-restricted-cone +none +19/20 +many ports / many ports"
            r" +3\.82 s +3\.29 s +4\.71 s +290 +322  other outcomes: relayed / relayed$",
        )
        self.assertEqual(len(line.split("  other")[0]), len(HEADER))
