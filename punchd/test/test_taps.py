"""
Tests for the command lines: L{punchd.server_tap} and L{punchd.peer_tap}.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from punchd import messages, peer_tap, server_tap
from punchd.metrics import MetricsService
from punchd.natprobe import NATReportProtocol
from punchd.peer import PeerProtocol
from punchd.portmap import defaultGateway
from punchd.server import StageManagerProtocol
from punchd.services import DatagramServer

PEER = ["--server", "127.0.0.1:8080", "--name", "alice", "--peer", "bob"]


def parse(optionsClass, argv):
    options = optionsClass()
    options.parseOptions(argv)
    return options


class ServerOptionsTests(SynchronousTestCase):
    """
    Tests for L{server_tap.Options}.
    """

    def test_defaults(self):
        """
        With no options the server listens on port 8080 on every IPv4
        address, for up to 100000 peers that live 60 s.
        """
        options = parse(server_tap.Options, [])
        self.assertEqual(
            {
                k: options[k]
                for k in (
                    "port", "interface", "max-clients", "ttl",
                    "max-names-per-address", "max-names-per-ip",
                )
            },
            {
                "port": 8080, "interface": "", "max-clients": 100000, "ttl": 60.0,
                "max-names-per-address": 4, "max-names-per-ip": 2000,
            },
        )

    def test_all(self):
        """
        Every option is parsed into its type.
        """
        options = parse(
            server_tap.Options,
            ["-p", "9000", "--interface", "::1", "--max-clients", "16", "--ttl", "30.5"],
        )
        self.assertEqual(
            {k: options[k] for k in ("port", "interface", "max-clients", "ttl")},
            {"port": 9000, "interface": "::1", "max-clients": 16, "ttl": 30.5},
        )

    def test_errorsNameTheOption(self):
        """
        Each bad value is a usage error that names its option and the value.
        """
        cases = [
            (["--port", "70000"], "--port: 70000 is not a port number between 0 and 65535"),
            (["--port", "http"], "--port: 'http' is not a port number"),
            (["--interface", "eth0"], "--interface: 'eth0' is not an IPv4 or IPv6 address"),
            (["--max-clients", "0"], "--max-clients: 0 must be at least 1"),
            (["--max-clients", "many"], "--max-clients: 'many' is not a whole number"),
            (["--ttl", "-1"], "--ttl: '-1' must be greater than zero"),
            (["--ttl", "nan"], "--ttl: 'nan' must be greater than zero"),
            (["--max-names-per-address", "0"], "--max-names-per-address: 0 must be at least 1"),
            (["--max-names-per-ip", "x"], "--max-names-per-ip: 'x' is not a whole number"),
            (
                ["--max-names-per-address", "9", "--max-names-per-ip", "8"],
                "--max-names-per-address (9) cannot exceed --max-names-per-ip (8)",
            ),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, server_tap.Options, argv)
            self.assertEqual(str(e), message)

    def test_turnOptions(self):
        """
        C{--turn-server} is resolved, C{--turn-secret-file} read as it is
        (white space around it aside), and the stage manager given the
        offer; each misuse is a usage error naming the option.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"turn s3cret\n")
        options = parse(
            server_tap.Options,
            ["--turn-server", "192.0.2.10:3478", "--turn-secret-file", path, "--turn-realm", "punchd"],
        )
        self.assertEqual(
            (options["turn-server"], options["turn-secret-file"], options["turn-realm"], options["turn-lifetime"]),
            (("192.0.2.10", 3478), b"turn s3cret", "punchd", 3600.0),
        )
        relay = server_tap.makeService(options, reactor=Clock()).protocol.turn
        self.assertEqual((relay.server, relay.realm, relay.lifetime), (("192.0.2.10", 3478), "punchd", 3600.0))
        self.assertIsNone(server_tap.makeService(parse(server_tap.Options, []), reactor=Clock()).protocol.turn)
        cases = [
            (["--turn-server", "192.0.2.10:3478"], "--turn-server needs --turn-secret-file: the secret the TURN server checks the credentials with"),
            (["--turn-secret-file", path], "--turn-secret-file needs --turn-server"),
            (["--turn-realm", "punchd"], "--turn-realm needs --turn-server"),
            (["--turn-server", "192.0.2.10", "--turn-secret-file", path], "--turn-server: '192.0.2.10' is not HOST:PORT"),
            (["--turn-server", "192.0.2.10:3478", "--turn-secret-file", "/nonexistent"], "--turn-secret-file: cannot read '/nonexistent': No such file or directory"),
            (["--turn-server", "192.0.2.10:3478", "--turn-secret-file", path, "--turn-lifetime", "0"], "--turn-lifetime: '0' must be greater than zero"),
        ]
        for argv, message in cases:
            with self.assertRaises(usage.UsageError) as caught:
                parse(server_tap.Options, argv)
            self.assertEqual(str(caught.exception), message)

    def test_securityOptions(self):
        """
        C{--secret-file} reads the key from its file; the rates are numbers,
        0 for no limit; each bad value is a usage error naming its option.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"s3cret\n")
        options = parse(
            server_tap.Options,
            ["--secret-file", path, "--registration-rate", "0", "--binding-rate", "5.5"],
        )
        self.assertEqual(
            (options["secret-file"], options["registration-rate"], options["binding-rate"]),
            (messages.sharedKey(b"s3cret"), 0.0, 5.5),
        )
        protocol = server_tap.makeService(options, reactor=Clock()).protocol
        self.assertIsNone(protocol.registrationLimit)
        self.assertIsNotNone(protocol.bindingLimit)
        empty = self.mktemp()
        open(empty, "w").close()
        cases = [
            (["--secret-file", "/nonexistent/secret"], "--secret-file: cannot read '/nonexistent/secret': No such file or directory"),
            (["--secret-file", empty], f"--secret-file: {empty!r} is empty"),
            (["--secret-file", path, "--seed-compat"], "--secret-file cannot go with --seed-compat: its clients cannot carry the shared secret"),
            (["--registration-rate", "-1"], "--registration-rate: '-1' must be 0 (no limit) or more"),
            (["--binding-rate", "fast"], "--binding-rate: 'fast' is not a number"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, server_tap.Options, argv)
            self.assertEqual(str(e), message)

    def test_discoveryErrors(self):
        """
        NAT behaviour discovery options that cannot work are usage errors
        naming the option.
        """
        cases = [
            (["--alternate-address", "127.0.0.2"], "--alternate-address needs --alternate-port"),
            (["--alternate-port", "8081"], "--interface must be a specific address with --alternate-port: the answers name it"),
            (["-i", "127.0.0.1", "--alternate-port", "8080"], "--alternate-port must be a port other than --port, not 8080"),
            (["-i", "127.0.0.1", "--alternate-port", "8081", "--alternate-address", "127.0.0.1"], "--alternate-address must differ from --interface"),
            (["-i", "127.0.0.1", "--alternate-port", "8081", "--alternate-address", "::1"], "--alternate-address must be of the same family as --interface"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, server_tap.Options, argv)
            self.assertEqual(str(e), message)

    def test_makeServiceWithDiscovery(self):
        """
        With an alternate port and address, the service listens on all four
        combinations, the primary one with the stage manager.
        """
        options = parse(
            server_tap.Options,
            ["-i", "127.0.0.1", "--alternate-port", "8081", "--alternate-address", "127.0.0.2"],
        )
        service = server_tap.makeService(options, reactor=Clock())
        listening = sorted(
            (child.interface, child.port) for child in service
        )
        self.assertEqual(
            listening,
            [("127.0.0.1", 8080), ("127.0.0.1", 8081), ("127.0.0.2", 8080), ("127.0.0.2", 8081)],
        )
        [primary] = [c for c in service if isinstance(c.protocol, StageManagerProtocol)]
        self.assertIsNotNone(primary.protocol.discovery)

    def test_makeService(self):
        """
        The service listens with a stage manager whose phonebook has the
        configured bounds.
        """
        clock = Clock()
        options = parse(
            server_tap.Options,
            [
                "--port", "9000", "--max-clients", "5", "--ttl", "7",
                "--max-names-per-address", "2", "--max-names-per-ip", "3",
            ],
        )
        service = server_tap.makeService(options, reactor=clock)
        self.assertIsInstance(service, DatagramServer)
        protocol = service.protocol
        self.assertEqual(service.port, 9000)
        self.assertIsInstance(protocol, StageManagerProtocol)
        self.assertIs(protocol.clock, clock)
        book = protocol.phonebook
        self.assertEqual(
            (book.maxEntries, book.ttl, book.namesPerAddress, book.namesPerIP), (5, 7.0, 2, 3)
        )

    def test_metricsOptions(self):
        """
        Metrics are off by default, and served on localhost unless
        C{--metrics-interface} says otherwise.
        """
        keys = ("metrics-port", "metrics-interface")
        defaults = parse(server_tap.Options, [])
        chosen = parse(server_tap.Options, ["--metrics-port", "9466", "--metrics-interface", "::1"])
        self.assertEqual(
            ([defaults[k] for k in keys], [chosen[k] for k in keys]),
            ([None, "127.0.0.1"], [9466, "::1"]),
        )
        e = self.assertRaises(usage.UsageError, parse, server_tap.Options, ["--metrics-port", "x"])
        self.assertEqual(str(e), "--metrics-port: 'x' is not a port number")

    def test_makeServiceWithMetrics(self):
        """
        With C{--metrics-port}, the service also serves the stage manager's
        metrics over HTTP, binding when privileged.
        """
        reactor = MemoryReactorClock()
        options = parse(server_tap.Options, ["--metrics-port", "9466"])
        top = server_tap.makeService(options, reactor=reactor)
        [udp, metrics] = top
        self.assertIsInstance(metrics, MetricsService)
        metrics.privilegedStartService()
        [(port, site, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9466, "127.0.0.1"))
        udp.protocol.stats["registrations"] = 5
        scraped = site.resource.children[b"metrics"].render_GET(DummyRequest([b"metrics"]))
        self.assertIn(b"\npunchd_registrations_total 5\n", scraped)

    def test_hideAddresses(self):
        """
        With C{--hide-addresses}, the stage manager leaves peers' addresses
        out of its log.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for argv in ([], ["--hide-addresses"]):
            service = server_tap.makeService(parse(server_tap.Options, argv), reactor=Clock())
            service.protocol.drops.drop("malformed", "192.0.2.7:5000")
        self.assertEqual([e["source"] for e in events], ["192.0.2.7:5000", "(hidden)"])


class PeerOptionsTests(SynchronousTestCase):
    """
    Tests for L{peer_tap.Options}.
    """

    def test_defaults(self):
        """
        Only the server, the name and the peer are needed; the server is
        resolved to an address and port.
        """
        options = parse(peer_tap.Options, PEER)
        self.assertEqual(
            {
                k: options[k]
                for k in (
                    "server", "name", "peer", "port", "interval", "message",
                    "punch-timeout", "keepalive",
                )
            },
            {
                "server": ("127.0.0.1", 8080),
                "name": "alice",
                "peer": ["bob"],
                "port": 0,
                "interval": 20.0,
                "message": None,
                "punch-timeout": 5.0,
                "keepalive": 5.0,
            },
        )

    def test_shortFlags(self):
        """
        C{-s}, C{-n} and C{-c} are the server, name and contact, as in the
        original test client.
        """
        options = parse(
            peer_tap.Options,
            ["-s", "[::1]:9000", "-n", "bob", "-c", "alice", "--port", "4000", "-m", "hi"],
        )
        self.assertEqual(
            (options["server"][:2], options["name"], options["peer"], options["port"], options["message"]),
            (("::1", 9000), "bob", ["alice"], 4000, "hi"),
        )

    def test_severalPeers(self):
        """
        C{--peer} given several times names several contacts, kept in
        order, which the peer protocol gets.
        """
        options = parse(peer_tap.Options, PEER + ["--peer", "carol", "-c", "dave"])
        self.assertEqual(options["peer"], ["bob", "carol", "dave"])
        service = peer_tap.makeService(options, reactor=Clock())
        self.assertEqual(service.protocol.wants, ("bob", "carol", "dave"))

    def test_badContacts(self):
        """
        A contact named twice, this peer named as a contact, too many
        contacts, and several with --seed-compat are usage errors naming
        --peer.
        """
        many = [arg for i in range(messages.MAX_CONTACTS + 1) for arg in ("--peer", f"p{i}")]
        for extra in (
            ["--peer", "bob"],
            ["--peer", "alice"],
            many,
            ["--peer", "carol", "--seed-compat"],
        ):
            with self.assertRaises(usage.UsageError) as caught:
                parse(peer_tap.Options, PEER + extra)
            self.assertIn("--peer", str(caught.exception))

    def test_hostName(self):
        """
        A host name is resolved at start.
        """
        options = parse(
            peer_tap.Options, ["-s", "localhost:8080", "-n", "a", "-c", "b"]
        )
        self.assertIn(options["server"][0], ("127.0.0.1", "::1"))

    def test_missing(self):
        """
        Each required option, when missing, is named in the usage error.
        """
        for index, option in ((0, "server"), (2, "name"), (4, "peer")):
            argv = PEER[:index] + PEER[index + 2 :]
            e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, argv)
            self.assertEqual(str(e), f"--{option} is required")

    def test_errorsNameTheOption(self):
        """
        Each bad value is a usage error that names its option.
        """
        cases = [
            (["--server", "nonexistent.invalid:8080"], "--server: cannot resolve 'nonexistent.invalid'"),
            (["--server", "127.0.0.1"], "--server: '127.0.0.1' is not HOST:PORT"),
            (["--server", "127.0.0.1:0"], "--server: '127.0.0.1:0': port 0 is not between 1 and 65535"),
            (["--server", "127.0.0.1:x"], "--server: '127.0.0.1:x': port 'x' is not a number"),
            (["--server", "::1:8080"], "--server: '::1:8080': write an IPv6 address in brackets"),
            (["--name", "al ice"], "--name: name 'al ice' has white space or control characters"),
            (["--name", "x" * 65], "--name: name is 65 bytes, the limit is 64"),
            (["--peer", ""], "--peer: empty name"),
            (["--peer", "alice"], "--peer must name another peer, not this one (alice)"),
            (["--port", "-1"], "--port: -1 is not a port number between 0 and 65535"),
            (["--interval", "0"], "--interval: '0' must be greater than zero"),
            (["--punch-timeout", "soon"], "--punch-timeout: 'soon' is not a number"),
            (["--keepalive", "inf"], "--keepalive: 'inf' must be greater than zero"),
        ]
        for extra, message in cases:
            e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, PEER + extra)
            self.assertTrue(str(e).startswith(message), f"{str(e)!r} for {extra}")

    def test_messageLimit(self):
        """
        A C{--message} longer in UTF-8 than a direct message can carry is a
        usage error naming the option and the limit in bytes; one that
        just fits is taken whole.
        """
        fits = "xx" + "\u00e9" * 725
        self.assertEqual(parse(peer_tap.Options, PEER + ["-m", fits])["message"], fits)
        cases = [
            (["-m", fits + "x"], "--message: 1453 bytes of UTF-8, the limit is 1452 bytes"),
            (["-m", "\u00e9" * 727], "--message: 1454 bytes of UTF-8, the limit is 1452 bytes"),
            (
                ["--seed-compat", "-m", "x" * 1024],
                "--message: 1024 bytes of UTF-8, the limit is 1023 bytes with --seed-compat",
            ),
            (["-m", "x\udcff"], "--message: the text is not UTF-8"),
        ]
        for extra, message in cases:
            e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, PEER + extra)
            self.assertEqual(str(e), message)

    def test_probe(self):
        """
        With C{--probe}, only the server is needed, and the service runs the
        NAT report instead of a peer.
        """
        options = parse(peer_tap.Options, ["--server", "127.0.0.1:8080", "--probe"])
        reactor = MemoryReactorClock()
        service = peer_tap.makeService(options, reactor=reactor)
        report = service.protocol
        self.assertIsInstance(report, NATReportProtocol)
        report.done()
        self.assertTrue(reactor.hasStopped, "the report stops the reactor when done")
        e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, ["--probe"])
        self.assertEqual(str(e), "--server is required")

    def test_makeService(self):
        """
        The service listens on the chosen port with a peer configured from
        the options.
        """
        clock = Clock()
        options = parse(peer_tap.Options, PEER + ["--port", "4000", "-i", "10", "-m", "hi"])
        service = peer_tap.makeService(options, reactor=clock)
        protocol = service.protocol
        self.assertEqual((service.port, service.interface), (4000, ""))
        self.assertIsInstance(protocol, PeerProtocol)
        self.assertEqual(
            (protocol.server, protocol.name, protocol.wants, protocol.interval, protocol.application.text),
            (("127.0.0.1", 8080), "alice", ("bob",), 10.0, "hi"),
        )


class PeerSecretOptionsTests(SynchronousTestCase):
    """
    Tests for C{punch-peer --peer-secret-file}.
    """

    def secretFile(self, content):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_readsSecret(self):
        """
        The secret is the file's content without the white space around it.
        """
        path = self.secretFile(b"  sixteen bytes!!!\n")
        options = parse(peer_tap.Options, PEER + ["--peer-secret-file", path])
        self.assertEqual(options["peer-secret-file"], b"sixteen bytes!!!")
        self.assertIsNone(parse(peer_tap.Options, PEER)["peer-secret-file"])

    def test_makeServiceWithSecret(self):
        """
        The peer gets the secret, and no original-client dialect, which
        cannot prove it.
        """
        path = self.secretFile(b"a secret of some length")
        options = parse(peer_tap.Options, PEER + ["--peer-secret-file", path])
        protocol = peer_tap.makeService(options, reactor=Clock()).protocol
        self.assertEqual((protocol._peerSecret, protocol.dialects), (b"a secret of some length", ()))

    def test_errorsNameTheOption(self):
        """
        A missing, empty or short secret file, or one with --seed-compat or
        --probe, is a usage error naming --peer-secret-file.
        """
        empty = self.secretFile(b" \n")
        short = self.secretFile(b"fifteen bytes!!\n")
        good = self.secretFile(b"a secret of some length")
        cases = [
            (PEER + ["--peer-secret-file", "/nonexistent/secret"],
             "--peer-secret-file: cannot read '/nonexistent/secret': No such file or directory"),
            (PEER + ["--peer-secret-file", empty], f"--peer-secret-file: {empty!r} is empty"),
            (PEER + ["--peer-secret-file", short],
             f"--peer-secret-file: {short!r} holds 15 bytes; a peer secret needs at least 16"),
            (PEER + ["--peer-secret-file", good, "--seed-compat"],
             "--peer-secret-file cannot go with --seed-compat"),
            (["--server", "127.0.0.1:8080", "--probe", "--peer-secret-file", good],
             "--peer-secret-file cannot go with --probe"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, argv)
            self.assertEqual(str(e), message)


class ServerRedisOptionsTests(SynchronousTestCase):
    """
    C{punch-server --redis URL}.
    """

    def setUp(self):
        from punchd.test.test_redisbook import requireClient

        requireClient(self)

    def test_parsed(self):
        """
        A Redis URL is read into where Redis is.
        """
        from punchd.redisstore import parseURL

        options = parse(server_tap.Options, ["--redis", "redis://127.0.0.1:6380/1"])
        self.assertEqual(options["redis"], parseURL("redis://127.0.0.1:6380/1"))
        self.assertIsNone(parse(server_tap.Options, [])["redis"])

    def test_errorsNameTheOption(self):
        """
        A bad URL, and --redis with --seed-compat, are usage errors naming
        the option.
        """
        cases = [
            (["--redis", "localhost:6379"], "--redis: 'localhost:6379' is not a Redis URL:"),
            (["--redis", "redis://h/x"], "--redis: 'redis://h/x': the database must be a number"),
            (["--redis", "unix://r.sock"], "--redis: 'unix://r.sock': a unix socket URL is"),
            (["--redis", "redis://h", "--seed-compat"], "--seed-compat cannot go with --redis"),
        ]
        for argv, message in cases:
            e = self.assertRaises(usage.UsageError, parse, server_tap.Options, argv)
            self.assertTrue(str(e).startswith(message), str(e))

    def test_makeService(self):
        """
        With --redis, the stage manager keeps a Redis phonebook, relays
        introductions, and its store is a service started before its port.
        """
        from zope.interface.verify import verifyObject

        from punchd.interfaces import IPhonebook
        from punchd.redisbook import RedisPhonebook
        from punchd.redisstore import RedisStore

        top = server_tap.makeService(
            parse(server_tap.Options, ["--redis", "unix:///nonexistent/r.sock", "--port", "0"])
        )
        store, port = list(top)
        self.assertIsInstance(store, RedisStore)
        protocol = port.protocol
        self.assertIsInstance(protocol.phonebook, RedisPhonebook)
        verifyObject(IPhonebook, protocol.phonebook)
        self.assertIs(protocol.relay.store, store)
        self.assertEqual(protocol.relay.holder, protocol.phonebook.holder)

    def test_quotas(self):
        """
        The Redis phonebook takes --max-names-per-address and
        --max-names-per-ip, as the phonebook in memory does.
        """
        top = server_tap.makeService(
            parse(
                server_tap.Options,
                ["--redis", "unix:///nonexistent/r.sock", "--port", "0",
                 "--max-names-per-address", "3", "--max-names-per-ip", "7"],
            )
        )
        book = list(top)[1].protocol.phonebook
        self.assertEqual((book.namesPerAddress, book.namesPerIP), (3, 7))


class PortMappingOptionsTests(SynchronousTestCase):
    """
    C{--port-mapping} and C{--gateway}.
    """

    def test_gatewayGiven(self):
        """
        With C{--gateway}, the peer asks that router for its mapping.
        """
        options = parse(peer_tap.Options, PEER + ["--port-mapping", "--gateway", "127.0.0.1"])
        self.assertEqual((options["port-mapping"], options["gateway"]), (True, "127.0.0.1"))
        protocol = peer_tap.makeService(options, reactor=Clock()).protocol
        self.assertEqual(protocol._portMapping, ("127.0.0.1", "127.0.0.1"))

    def test_offByDefault(self):
        """
        Without C{--port-mapping}, no router is asked.
        """
        options = parse(peer_tap.Options, PEER)
        self.assertEqual((options["port-mapping"], options["gateway"]), (False, None))
        self.assertIsNone(peer_tap.makeService(options, reactor=Clock()).protocol._portMapping)

    def test_defaultGateway(self):
        """
        The default route's gateway is read from Linux's route table.
        """
        table = (
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
            "eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
            "eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\n"
        )
        self.assertEqual(defaultGateway(table), "10.0.1.1")
        self.assertIsNone(defaultGateway(table.splitlines()[0] + "\n" + table.splitlines()[1]))

    def test_errorsNameTheOption(self):
        """
        A bad gateway, a gateway without port mapping, and port mapping
        with an IPv6 stage manager, C{--probe} or C{--seed-compat} are
        usage errors naming the option.
        """
        for argv, message in (
            (["--port-mapping", "--gateway", "router"], "--gateway: 'router' is not an IPv4 address"),
            (["--gateway", "10.0.0.1"], "--gateway needs --port-mapping"),
            (["--port-mapping", "--gateway", "10.0.0.1", "--seed-compat"],
             "--port-mapping cannot go with --seed-compat"),
        ):
            e = self.assertRaises(usage.UsageError, parse, peer_tap.Options, PEER + argv)
            self.assertEqual(str(e), message)
        e = self.assertRaises(
            usage.UsageError,
            parse,
            peer_tap.Options,
            ["-s", "[::1]:9000", "-n", "a", "-c", "b", "--port-mapping", "--gateway", "10.0.0.1"],
        )
        self.assertEqual(
            str(e), "--port-mapping: the stage manager ::1 is IPv6; port mapping here is for IPv4"
        )


class DualStackOptionsTests(SynchronousTestCase):
    """
    A C{--server} name with both an A and an AAAA record makes the peer
    dual-stack.
    """

    def setUp(self):
        import socket

        from punchd import addresses

        real = addresses.socket.getaddrinfo

        def getaddrinfo(host, port, *args, **kwargs):
            if host == "stage.example":
                return [
                    (socket.AF_INET6, socket.SOCK_DGRAM, 17, "", ("2001:db8:5::10", port, 0, 0)),
                    (socket.AF_INET, socket.SOCK_DGRAM, 17, "", ("192.0.2.10", port)),
                ]
            return real(host, port, *args, **kwargs)

        self.patch(addresses.socket, "getaddrinfo", getaddrinfo)

    def test_bothFamilies(self):
        """
        The IPv4 address is the stage manager registered with, the IPv6 one
        the second family's, and the peer listens on C{::}.
        """
        options = parse(peer_tap.Options, ["-s", "stage.example:8080", "-n", "a", "-c", "b"])
        self.assertEqual(
            (options["server"], options["secondServer"]),
            (("192.0.2.10", 8080), ("2001:db8:5::10", 8080)),
        )
        service = peer_tap.makeService(options, MemoryReactorClock())
        self.assertEqual(service.interface, "::")
        self.assertEqual(service.protocol.dualStack, True)

    def test_oneFamily(self):
        """
        A literal address, and C{--probe} with a name of both families,
        speak one family.
        """
        for argv in (PEER, ["-s", "stage.example:8080", "-n", "a", "-c", "b", "--probe"]):
            self.assertIsNone(parse(peer_tap.Options, argv)["secondServer"], argv)
