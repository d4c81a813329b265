"""
Tests for L{punchd.metrics}: a stage manager's counters for Prometheus.
"""

from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, readBody

from punchd import stun
from punchd.metrics import CONTENT_TYPE, MetricsService, exposition
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER, provenRegistration
from punchd.test.optional import notInstalled, require
from punchd.testing import Network

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None


def samples(text):
    """
    Parse the Prometheus text format.

    @return: C{{(name, labels): value}} for every sample.
    """
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def stageManager():
    """
    A stage manager on a simulated network, and a client's transport to
    send it datagrams from.
    """
    network = Network(latency=0.125)
    host = network.host(SERVER[0])
    server = StageManagerProtocol(host, Phonebook(maxEntries=10, ttl=60))
    host.listenUDP(SERVER[1], server)
    client = network.host("203.0.113.5").listenUDP(5000, DatagramProtocol())
    return network, server, client


class ExpositionTests(SynchronousTestCase):
    """
    Tests for L{exposition}.
    """

    def setUp(self):
        require(self, text_string_to_metric_families is not None, notInstalled("prometheus_client"))

    def test_fresh(self):
        """
        A fresh stage manager has every family, at zero, and no drops.
        """
        _, server, _ = stageManager()
        self.assertEqual(
            samples(exposition(server)),
            {
                ("punchd_received_datagrams_total", ()): 0,
                ("punchd_received_bytes_total", ()): 0,
                ("punchd_sent_bytes_total", ()): 0,
                ("punchd_registrations_total", ()): 0,
                ("punchd_introductions_total", ()): 0,
                ("punchd_unregistrations_total", ()): 0,
                ("punchd_expiries_total", ()): 0,
                ("punchd_phonebook_full_total", ()): 0,
                ("punchd_source_quota_refused_total", ()): 0,
                ("punchd_binding_answers_total", ()): 0,
                ("punchd_refreshes_total", ()): 0,
                ("punchd_refreshes_refused_total", ()): 0,
                ("punchd_rate_limited_total", ()): 0,
                ("punchd_cookie_challenges_total", ()): 0,
                ("punchd_second_family_registrations_total", ()): 0,
                ("punchd_second_family_refused_total", ()): 0,
                ("punchd_takeovers_refused_total", ()): 0,
                ("punchd_unlogged_events_total", ()): 0,
                ("punchd_phonebook_entries", ()): 0,
            },
        )

    def test_traffic(self):
        """
        Registrations, introductions, Binding answers, live entries, bytes
        and drops by reason are read from the stage manager as they are.
        """
        network, server, client = stageManager()
        binding = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, stun.newTransactionID()))
        sent = [
            provenRegistration(server, client, "alice", "bob", seeking=True),
            provenRegistration(server, client, "bob", "alice", seeking=True),
            binding,
            b"junk",
            b"more junk",
        ]
        for datagram in sent:
            client.write(datagram, SERVER)
        network.advance(1)
        answers = [d.data for d in network.traffic if d.source == SERVER]
        values = samples(exposition(server))
        self.assertEqual(
            {name: value for (name, _), value in values.items() if value},
            {
                "punchd_received_datagrams_total": 5,
                "punchd_received_bytes_total": sum(map(len, sent)),
                "punchd_sent_bytes_total": sum(map(len, answers)),
                "punchd_registrations_total": 2,
                "punchd_introductions_total": 1,
                "punchd_binding_answers_total": 1,
                "punchd_phonebook_entries": 2,
                "punchd_dropped_datagrams_total": 2,
            },
        )
        self.assertEqual(
            values[("punchd_dropped_datagrams_total", (("reason", "malformed"),))], 2
        )

    def test_expiries(self):
        """
        An entry that expires leaves the live entries and is counted.
        """
        network, server, client = stageManager()
        client.write(provenRegistration(server, client, "alice"), SERVER)
        network.advance(61)
        values = samples(exposition(server))
        self.assertEqual(
            (
                values[("punchd_expiries_total", ())],
                values[("punchd_phonebook_entries", ())],
            ),
            (1, 0),
        )

    def test_labelEscaped(self):
        """
        A reason with a quote, a backslash or a newline still parses back
        to itself.
        """
        _, server, _ = stageManager()
        reason = 'say "hi"\\\nagain'
        server.drops.counts[reason] = 3
        self.assertEqual(
            samples(exposition(server))[("punchd_dropped_datagrams_total", (("reason", reason),))],
            3,
        )

    def test_help(self):
        """
        Every family says what it counts.
        """
        _, server, _ = stageManager()
        families = list(text_string_to_metric_families(exposition(server)))
        self.assertEqual([f.name for f in families if not f.documentation], [])
        self.assertEqual(len(families), 20)


class MetricsServiceTests(TestCase):
    """
    Tests for L{MetricsService}, over real loopback TCP.
    """

    def setUp(self):
        self.network, self.server, self.client = stageManager()
        self.events = EventLoggingObserver.createWithCleanup(self, MetricsService.log.observer)
        self.service = MetricsService(self.server, 0, "127.0.0.1", reactor)
        self.service.privilegedStartService()
        self.service.startService()
        self.addCleanup(self.service.stopService)
        host = self.service.listeningPort.getHost()
        self.url = f"http://127.0.0.1:{host.port}".encode("ascii")

    async def get(self, path):
        response = await Agent(reactor).request(b"GET", self.url + path)
        return response, (await readBody(response)).decode("utf-8")

    async def test_scrape(self):
        """
        A scrape of /metrics gets the Prometheus text format with the
        counters of that moment.
        """
        require(self, text_string_to_metric_families is not None, notInstalled("prometheus_client"))
        self.client.write(provenRegistration(self.server, self.client, "alice"), SERVER)
        self.network.advance(1)
        response, body = await self.get(b"/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"), [CONTENT_TYPE])
        values = samples(body)
        self.assertEqual(
            (values[("punchd_registrations_total", ())], values[("punchd_phonebook_entries", ())]),
            (1, 1),
        )

    async def test_elsewhere(self):
        """
        Nothing but /metrics is served.
        """
        response, _ = await self.get(b"/")
        self.assertEqual(response.code, 404)

    def test_logsWhere(self):
        """
        The address to scrape is logged once listening.
        """
        [event] = [e for e in self.events if e["log_namespace"] == MetricsService.log.namespace]
        self.assertEqual(
            event["address"], f"127.0.0.1:{self.service.listeningPort.getHost().port}"
        )


class MetricsWiringTests(SynchronousTestCase):
    """
    How L{MetricsService} listens.
    """

    def test_bindsWhenPrivileged(self):
        """
        The TCP port is bound before privileges are shed, on the interface
        asked for.
        """
        _, server, _ = stageManager()
        memory = MemoryReactor()
        service = MetricsService(server, 9466, "::1", memory)
        service.privilegedStartService()
        [(port, _, _, interface)] = memory.tcpServers
        self.assertEqual((port, interface), (9466, "::1"))
