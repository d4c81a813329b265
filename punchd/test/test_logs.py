"""
Tests for L{punchd.logs}: log observers for the journal and log shippers.
"""

import io
import json
import sys
from types import SimpleNamespace

from zope.interface.verify import verifyObject

from twisted.logger import ILogObserver, Logger, formatEvent
from twisted.scripts.twistd import ServerOptions
from twisted.trial.unittest import SynchronousTestCase

from punchd.logs import hideAddresses, journaldObserver, jsonObserver


def emit(observerFactory, emitter):
    """
    Log with C{emitter(log)} to an observer made by C{observerFactory}.

    @return: What the observer wrote.
    """
    out = io.StringIO()
    log = Logger(namespace="punchd.test", observer=observerFactory(out))
    emitter(log)
    return out.getvalue()


def failure(log):
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("Sums went wrong for {name}", name="alice")


class JSONObserverTests(SynchronousTestCase):
    """
    Tests for L{jsonObserver}.
    """

    def test_fields(self):
        """
        An event is one line of JSON with its own fields as they are, its
        level by name, its namespace and format, and its text.
        """
        def left(log):
            log.info("{name} at {address} left", name="alice", address="192.0.2.1:5", size=3)

        written = emit(jsonObserver, left)
        self.assertTrue(written.endswith("\n"))
        self.assertEqual(written.count("\n"), 1)
        record = json.loads(written)
        self.assertIsInstance(record.pop("log_time"), float)
        self.assertEqual(
            record,
            {
                "name": "alice",
                "address": "192.0.2.1:5",
                "size": 3,
                "log_level": "info",
                "log_namespace": "punchd.test",
                "log_format": "{name} at {address} left",
                "log_text": "alice at 192.0.2.1:5 left",
            },
        )

    def test_failure(self):
        """
        A failure's traceback is in the text, and the event is still one
        line.
        """
        written = emit(jsonObserver, failure)
        self.assertEqual(written.count("\n"), 1)
        record = json.loads(written)
        self.assertEqual(record["log_level"], "critical")
        self.assertTrue(record["log_text"].startswith("Sums went wrong for alice\nTraceback"))
        self.assertIn("ZeroDivisionError", record["log_text"])

    def test_anyValue(self):
        """
        A value JSON cannot hold is written as text.
        """
        written = emit(jsonObserver, lambda log: log.info("{what}", what={1, 2}))
        self.assertEqual(json.loads(written)["what"], "{1, 2}")


class JournaldObserverTests(SynchronousTestCase):
    """
    Tests for L{journaldObserver}.
    """

    def test_noTimestamp(self):
        """
        A line is the syslog priority, the system and the message, without
        a time stamp of its own.
        """
        written = emit(journaldObserver, lambda log: log.info("{name} left", name="alice"))
        self.assertEqual(written, "<6>[punchd.test#info] alice left\n")

    def test_priorities(self):
        """
        Each level has its syslog priority, so journalctl -p can pick them.
        """
        def everyLevel(log):
            for method in (log.debug, log.info, log.warn, log.error, log.critical):
                method("hello")

        written = emit(journaldObserver, everyLevel)
        self.assertEqual(
            [line[:3] for line in written.splitlines()],
            ["<7>", "<6>", "<4>", "<3>", "<2>"],
        )

    def test_traceback(self):
        """
        The lines of a traceback follow, indented.
        """
        first, *rest = emit(journaldObserver, failure).splitlines()
        self.assertEqual(first, "<2>[punchd.test#critical] Sums went wrong for alice")
        self.assertTrue(rest)
        self.assertEqual([line for line in rest if not line.startswith("\t")], [])
        self.assertEqual(rest[0], "\tTraceback (most recent call last):")
        self.assertIn("\tbuiltins.ZeroDivisionError: division by zero", rest)


class TwistdLoggerTests(SynchronousTestCase):
    """
    The observers as twistd's C{--logger}.
    """

    def test_loggerOption(self):
        """
        twistd's C{--logger} names each factory, which makes an observer
        writing to standard output.
        """
        for name, line in (
            ("punchd.logs.jsonObserver", '"log_text": "alice left"'),
            ("punchd.logs.journaldObserver", "<6>[punchd.test#info] alice left\n"),
        ):
            options = ServerOptions()
            options.parseOptions(["--logger", name, "punch-server"])
            stdout = io.StringIO()
            self.patch(sys, "stdout", stdout)
            observer = options["logger"]()
            verifyObject(ILogObserver, observer)
            Logger(namespace="punchd.test", observer=observer).info("{name} left", name="alice")
            self.assertIn(line, stdout.getvalue(), name)


class HideAddressesTests(SynchronousTestCase):
    """
    Tests for L{hideAddresses}.
    """

    def test_onlyPeerAddresses(self):
        """
        The fields that hold peers' addresses say they are hidden, in the
        event and in its text; the others are as they were.
        """
        events = []
        server = SimpleNamespace(log=Logger(observer=events.append))
        hideAddresses(server)
        server.log.info(
            "{name} at {address} via {serverAddress}",
            name="alice",
            address="192.0.2.7:5000",
            serverAddress="192.0.2.1:8080",
        )
        [event] = events
        self.assertEqual(
            (event["address"], event["log_source"], formatEvent(event)),
            ("(hidden)", server, "alice at (hidden) via 192.0.2.1:8080"),
        )
