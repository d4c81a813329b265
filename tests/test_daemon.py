"""
System tests: punch-server as a long-running daemon, in real C{twistd}
processes on 127.0.0.1: a clean stop, its metrics and its JSON log.
"""

import json
import os
import re
import socket
import urllib.request

from twisted.trial.unittest import TestCase

from punchd import messages, stun
from punchd.demo import Processes, twistdCommand
from punchd.test.optional import notInstalled, require
from tests.processes import assertStopsCleanly, startServer, waitFor

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

METRICS = re.compile(r"Metrics for Prometheus at (http://\S+/metrics)")


def register(server, name):
    """
    Register C{name} with the stage manager at C{server} from a fresh
    socket as a peer does: first without a cookie, which gets a cookie
    challenge, then again echoing it, which proves the address.

    @return: The datagrams sent, and those received.
    """
    requests, answers = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        cookie = None
        for _ in range(2):
            request = messages.encodeRegistration(
                stun.newTransactionID(),
                messages.Registration(name, (), (), (), cookie),
                messages.UNPROVEN_REGISTRATION_BYTES,
            )
            s.sendto(request, server)
            answer, _ = s.recvfrom(2048)
            requests.append(request)
            answers.append(answer)
            # A cookie challenge first, then the answer.
            cookie = stun.decode(answer).get(messages.COOKIE)
    return requests, answers


class GracefulStopTests(TestCase):
    """
    SIGTERM, as systemd stops a service.
    """

    def test_sigterm(self):
        """
        On SIGTERM a peer unregisters and the stage manager stops, both
        without a traceback and leaving no pid file behind.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        pidFiles = {name: os.path.join(directory, f"{name}.pid") for name in ("server", "alice")}
        with Processes() as processes:
            server, _ = startServer(
                self,
                processes,
                [],
                twistd=twistdCommand() + ["--nodaemon", "--pidfile", pidFiles["server"]],
            )
            processes.start(
                "alice",
                twistdCommand()
                + ["--nodaemon", "--pidfile", pidFiles["alice"], "punch-peer"]
                + ["--server", f"127.0.0.1:{server[1]}", "--name", "alice", "--peer", "bob"],
            )
            seen, lines = waitFor(
                processes, {("alice", "registered"): re.compile("Waiting for bob")}, 20
            )
            self.assertEqual(len(seen), 1, f"alice did not register: {lines}")
            self.assertTrue(all(os.path.exists(p) for p in pidFiles.values()))
            processes.stop("alice")
            seen, more = waitFor(
                processes, {("server", "left"): re.compile(r"alice at 127\.0\.0\.1:\d+ left")}, 10
            )
            lines += more
            self.assertEqual(len(seen), 1, f"alice did not unregister: {lines}")
            assertStopsCleanly(self, processes, lines)
        self.assertEqual([p for p in pidFiles.values() if os.path.exists(p)], [])


class MetricsTests(TestCase):
    """
    C{punch-server --metrics-port}, scraped.
    """

    def test_scrape(self):
        """
        A scrape of the metrics port parses as the Prometheus text format
        and counts what the stage manager did.
        """
        require(self, text_string_to_metric_families is not None, notInstalled("prometheus_client"))
        with Processes() as processes:
            server, found = startServer(
                self, processes, ["--metrics-port", "0"], patterns={"metrics": METRICS}
            )
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"junk", server)
            # Read after the junk, which it followed into the socket.
            requests, answers = register(server, "alice")
            with urllib.request.urlopen(found["metrics"].group(1), timeout=10) as response:
                self.assertEqual(response.status, 200)
                text = response.read().decode("utf-8")
        samples = {
            (sample.name, tuple(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        self.assertEqual(
            {
                key: samples[key]
                for key in [
                    ("punchd_registrations_total", ()),
                    ("punchd_phonebook_entries", ()),
                    ("punchd_received_bytes_total", ()),
                    ("punchd_sent_bytes_total", ()),
                    ("punchd_dropped_datagrams_total", (("reason", "malformed"),)),
                ]
            },
            {
                ("punchd_registrations_total", ()): 1,
                ("punchd_phonebook_entries", ()): 1,
                ("punchd_received_bytes_total", ()): sum(map(len, requests)) + 4,
                ("punchd_sent_bytes_total", ()): sum(map(len, answers)),
                ("punchd_dropped_datagrams_total", (("reason", "malformed"),)): 1,
            },
        )


class JSONLogTests(TestCase):
    """
    C{twistd --logger punchd.logs.jsonObserver}.
    """

    def test_oneObjectPerEvent(self):
        """
        Every line is a JSON object, and a registration's carries its
        fields.
        """
        twistd = twistdCommand() + [
            "--nodaemon", "--pidfile=", "--logger", "punchd.logs.jsonObserver"
        ]
        with Processes() as processes:
            processes.start(
                "server",
                twistd + ["punch-server", "--interface", "127.0.0.1", "--port", "0"],
            )
            listening = re.compile(r'"serverAddress": "127\.0\.0\.1:(\d+)"')
            seen, lines = waitFor(processes, {("server", "port"): listening}, 20)
            self.assertEqual(len(seen), 1, f"the stage manager did not start: {lines}")
            port = int(seen[("server", "port")][1].group(1))
            register(("127.0.0.1", port), "alice")
            seen, more = waitFor(processes, {("server", "alice"): re.compile('"alice"')}, 10)
            lines += more
        records = [json.loads(line) for _, line in lines if line]
        [registered] = [r for r in records if r.get("name") == "alice"]
        self.assertEqual(
            {k: registered[k] for k in ("log_level", "log_namespace", "localAddresses", "wants")},
            {
                "log_level": "info",
                "log_namespace": "punchd.server.StageManagerProtocol",
                "localAddresses": "none",
                "wants": "no one",
            },
        )
        self.assertRegex(registered["log_text"], r"^alice registered from 127\.0\.0\.1:\d+ ")
