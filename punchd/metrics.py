"""
A stage manager's counters for Prometheus, served over HTTP.

C{punch-server --metrics-port 9466} serves them at
C{http://127.0.0.1:9466/metrics} in the Prometheus text format, read from
the L{punchd.server.StageManagerProtocol} at each scrape.
"""

from twisted.application import service
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

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
    ("evictions", "punchd_evictions_total", "Phonebook entries forgotten to make room."),
    ("bindings", "punchd_binding_answers_total", "STUN Binding requests answered."),
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
        "Registrations of a name held by another address, without its secret.",
    ),
)


def _family(name, kind, help, samples):
    yield f"# HELP {name} {help}"
    yield f"# TYPE {name} {kind}"
    for labels, value in samples:
        yield f"{name}{labels} {value}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(protocol) -> str:
    """
    A stage manager's metrics, now.

    @param protocol: The L{punchd.server.StageManagerProtocol}.
    @return: The metrics in the Prometheus text format.
    """
    lines = []
    for key, name, help in COUNTERS:
        lines += _family(name, "counter", help, [("", protocol.stats[key])])
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
            for reason, count in sorted(protocol.drops.counts.items())
        ],
    )
    return "\n".join(lines) + "\n"


class MetricsResource(Resource):
    """
    The metrics of a stage manager, as a web resource.
    """

    isLeaf = True

    def __init__(self, protocol):
        """
        @param protocol: The L{punchd.server.StageManagerProtocol}.
        """
        super().__init__()
        self._protocol = protocol

    def render_GET(self, request):
        request.setHeader(b"content-type", CONTENT_TYPE)
        return exposition(self._protocol).encode("utf-8")


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

    def __init__(self, protocol, port: int, interface: str, reactor):
        """
        @param protocol: The L{punchd.server.StageManagerProtocol}.
        @param port: The TCP port, or 0 for any free one.
        @param interface: The address to listen on.
        @param reactor: The L{twisted.internet.interfaces.IReactorTCP}.
        """
        root = Resource()
        root.putChild(b"metrics", MetricsResource(protocol))
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
