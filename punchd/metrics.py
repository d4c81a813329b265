"""
A stage manager's counters for Prometheus, served over HTTP.

C{punch-server --metrics-port 9466} serves them at
C{http://127.0.0.1:9466/metrics} in the Prometheus text format, read from
the L{punchd.server.StageManagerProtocol} at each scrape.
"""

from collections import Counter

from twisted.application import service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from punchd.addresses import formatAddress

#: The Content-Type of the Prometheus text format.
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"

#: The counters: their key in C{StageManagerProtocol.stats}, their name, and
#: what they count.
COUNTERS = (
    (
        "datagrams",
        "punchd_received_datagrams_total",
        "Datagrams the stage manager's port received.",
    ),
    ("bytesReceived", "punchd_received_bytes_total", "Bytes the stage manager's port received."),
    ("bytesSent", "punchd_sent_bytes_total", "Bytes the stage manager's port sent."),
    ("registrations", "punchd_registrations_total", "Registrations answered, refreshes included."),
    ("introductions", "punchd_introductions_total", "Introductions of two peers to each other."),
    ("unregistrations", "punchd_unregistrations_total", "Peers that said goodbye."),
    ("expiries", "punchd_expiries_total", "Phonebook entries that expired unrefreshed."),
    (
        "phonebookFull",
        "punchd_phonebook_full_total",
        "New names refused because the phonebook was full.",
    ),
    (
        "quotaReached",
        "punchd_source_quota_refused_total",
        "Names refused because their source address and port, or its IP, held the most allowed.",
    ),
    ("bindings", "punchd_binding_answers_total", "STUN Binding requests answered."),
    ("refreshes", "punchd_refreshes_total", "Compact refreshes taken (REFRESH)."),
    (
        "refreshesRefused",
        "punchd_refreshes_refused_total",
        "Compact refreshes told to register in full.",
    ),
    (
        "rateLimited",
        "punchd_rate_limited_total",
        "Registrations and Binding requests dropped because their source sent too many.",
    ),
    (
        "challenges",
        "punchd_cookie_challenges_total",
        "Registrations answered only with a cookie to echo.",
    ),
    (
        "takeoversRefused",
        "punchd_takeovers_refused_total",
        "Registrations of a held name without the proof of its secret.",
    ),
    (
        "secondFamilies",
        "punchd_second_family_registrations_total",
        "Registrations that gave a name's public address of its other family (dual stack).",
    ),
    (
        "secondFamiliesRefused",
        "punchd_second_family_refused_total",
        "Registrations of a name's other family refused: not proven, or of the same family.",
    ),
    (
        "unloggedEvents",
        "punchd_unlogged_events_total",
        "Peer events not logged because they came faster than the log's rate.",
    ),
)


def _family(name, kind, help, samples):
    yield f"# HELP {name} {help}"
    yield f"# TYPE {name} {kind}"
    for labels, value in samples:
        yield f"{name}{labels} {value}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(protocol, others=()) -> str:
    """
    A stage manager's metrics, now.

    @param protocol: The L{punchd.server.StageManagerProtocol}.
    @param others: The counters of the other workers on its port
        (C{punch-server --workers}), added in: a C{(stats, drops)} pair of
        L{dict}s each.
    @return: The metrics in the Prometheus text format.
    """
    stats, drops = protocol.stats, protocol.drops.counts
    if others:
        stats, drops = Counter(stats), Counter(drops)
        for otherStats, otherDrops in others:
            stats.update(otherStats)
            drops.update(otherDrops)
    lines = []
    for key, name, help in COUNTERS:
        lines += _family(name, "counter", help, [("", stats[key])])
    lines += _family(
        "punchd_phonebook_entries",
        "gauge",
        "Peers in the phonebook.",
        [("", len(protocol.phonebook))],
    )
    # A shared phonebook says how its store fares (see punchd.redisbook).
    for name, kind, help, value in getattr(protocol.phonebook, "metricFamilies", list)():
        lines += _family(name, kind, help, [("", value)])
    lines += _family(
        "punchd_dropped_datagrams_total",
        "counter",
        "Datagrams dropped, by reason.",
        [
            (f'{{reason="{_label(reason)}"}}', count)
            for reason, count in sorted(drops.items())
        ],
    )
    return "\n".join(lines) + "\n"


class MetricsResource(Resource):
    """
    The metrics of a stage manager, as a web resource.
    """

    isLeaf = True

    def __init__(self, protocol, workers=None):
        """
        @param protocol: The L{punchd.server.StageManagerProtocol}.
        @param workers: The L{punchd.workers.WorkerStats} whose counters
            are added in, or L{None}.
        """
        super().__init__()
        self._protocol = protocol
        self._workers = workers

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE)
        if self._workers is None:
            return exposition(self._protocol).encode("utf-8")
        gone = []
        request.notifyFinish().addErrback(gone.append)

        def write(others):
            if not gone:
                request.write(exposition(self._protocol, others).encode("utf-8"))
                request.finish()

        # Without Redis, this worker's own counters alone.
        self._workers.gather().addErrback(lambda _: ()).addCallback(write)
        return NOT_DONE_YET


class MetricsSite(Site):
    """
    The web site of the metrics: quiet, since Prometheus scrapes it every
    few seconds.
    """

    noisy = False

    def log(self, request):
        """
        Log no access.
        """


class MetricsService(service.Service):
    """
    Serves a stage manager's metrics at C{/metrics} on a TCP port.

    @ivar listeningPort: The L{twisted.internet.interfaces.IListeningPort},
        once the service has started.
    """

    log = Logger()
    listeningPort = None

    def __init__(self, protocol, port: int, interface: str, reactor, workers=None):
        """
        @param protocol: The L{punchd.server.StageManagerProtocol}.
        @param port: The TCP port, or 0 for any free one.
        @param interface: The address to listen on.
        @param reactor: The L{twisted.internet.interfaces.IReactorTCP}.
        @param workers: With C{--workers}, the L{punchd.workers.WorkerStats}
            of the other workers, whose counters are added in.
        """
        root = Resource()
        root.putChild(b"metrics", MetricsResource(protocol, workers))
        self._site = MetricsSite(root)
        self._port = port
        self._interface = interface
        self._reactor = reactor

    def privilegedStartService(self):
        super().privilegedStartService()
        self.listeningPort = self._reactor.listenTCP(
            self._port, self._site, interface=self._interface
        )
        host = self.listeningPort.getHost()
        self.log.info(
            "Metrics for Prometheus at http://{address}/metrics",
            address=formatAddress((host.host, host.port)),
        )

    def stopService(self):
        super().stopService()
        return self.listeningPort.stopListening()
