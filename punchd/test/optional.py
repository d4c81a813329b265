"""
What some tests need that punchd itself does not: the packages of the
C{test} extra (C{pip install 'punchd[test]'}) and programs of the system.

A test that needs one skips without it and says what to install, so that
C{trial punchd} passes on a plain C{pip install punchd}; under C{CI=true} it
fails instead, since CI must install everything every test needs.

Hypothesis is imported from here: without it, a module of property tests
still imports, and each test made with L{given} skips.
"""

import functools
import os

from twisted.trial.unittest import SkipTest


def require(testCase, available, reason):
    """
    Skip C{testCase} for C{reason} unless C{available}; under C{CI=true},
    fail it instead.
    """
    if available:
        return
    if os.environ.get("CI") == "true":
        testCase.fail(f"{reason}, and CI=true: .ci/run must install it")
    raise SkipTest(reason)


def notInstalled(package, extra="test"):
    """
    Why a test that needs C{package}, of punchd's extra C{extra}, cannot run.
    """
    return f"{package} is not installed: pip install 'punchd[{extra}]'"


class _NoStrategies:
    """
    Stands in for C{hypothesis.strategies}, and for every strategy built
    from it, while the module that builds them is imported: no test draws
    from them, since each test made with L{given} skips.
    """

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return self


try:
    from hypothesis import given, settings, strategies as st
except ImportError:
    st = _NoStrategies()

    def settings(*args, **kwargs):
        """
        Hypothesis's C{settings} as a decorator, which changes nothing.
        """
        return lambda test: test

    def given(*args, **kwargs):
        """
        Hypothesis's C{given}: the test it makes skips, naming Hypothesis.
        """

        def decorate(test):
            @functools.wraps(test)
            def withoutHypothesis(self):
                require(self, False, notInstalled("hypothesis"))

            return withoutHypothesis

        return decorate


__all__ = ["require", "notInstalled", "given", "settings", "st"]
