"""
C{twistd punch-server}: options and service wiring for the stage manager.
"""

import os
import sys
from importlib.util import find_spec
from ipaddress import ip_address

from twisted.application import service
from twisted.python import usage
from twisted.python.systemd import ListenFDs

from punchd import options
from punchd.addresses import resolve, splitHostPort
from punchd.cookies import Cookies
from punchd.messages import MAX_TURN_TEXT_BYTES
from punchd.turn import CREDENTIAL_LIFETIME, RelayOffer
from punchd.discovery import BehaviourDiscovery
from punchd.metrics import MetricsService
from punchd.phonebook import NAMES_PER_ADDRESS, NAMES_PER_IP, Phonebook
from punchd.compat.server import OriginalClients
from punchd.server import SOURCE_RATE, StageManagerProtocol, sourceLimiter
from punchd.services import DatagramServer
from punchd.systemd import AdoptedDatagramPort, inheritedDatagramSocket
from punchd.workers import (
    ReusePortDatagramServer,
    WorkerPool,
    WorkerStats,
    dieWithParent,
    reusePortAvailable,
    twistdArguments,
)

LONGDESC = """\
Run the stage manager: the rendezvous server punchd peers register with.

It keeps a phonebook of peer names and the public addresses their NATs
showed it, and when two peers ask for each other it introduces them, both
at once, so they can punch a direct UDP path. It carries none of their
traffic. It also answers plain STUN Binding requests from any STUN client.

Run it where peers can reach its UDP port, e.g.:

    twistd -n punch-server --port 8080

With --alternate-port, and better still --alternate-address too, it also
answers RFC 5780 NAT behaviour discovery, so that peers (punch-peer --probe)
and STUN tools can tell how their NAT maps and filters.  The answers name the
server's own addresses, so --interface must then be a specific address.

With --metrics-port, it serves its counters for Prometheus at
http://127.0.0.1:PORT/metrics.

Under systemd socket activation, --systemd-socket NAME listens on the UDP
socket that the .socket unit with FileDescriptorName=NAME passes, instead of
binding --port on --interface: they are the socket's.

With --turn-server and --turn-secret-file, it hands each peer it
introduces short-lived credentials for that TURN server (coturn with
--use-auth-secret --static-auth-secret=THE SECRET), and forwards each
peer's relayed address to the peer it was introduced to: peers that cannot
reach each other directly then go through the relay. It never talks to the
TURN server itself.

    twistd -n punch-server --port 8080 --turn-server 192.0.2.10:3478 \
        --turn-secret-file /etc/punchd/turn-secret

With --redis URL (redis://HOST:PORT/DB or unix:///PATH), the phonebook
lives in Redis instead of in memory, and every stage manager given the same
URL shares it: a peer registered with one is introduced to a peer registered
with another (each introduction sent by the stage manager the peer
registered with), and a peer can move between them. While Redis cannot be
reached, registrations are refused with error 500 and STUN Binding requests
are still answered; the stage manager reconnects by itself. Needs
pip install 'punchd[redis]'.

With --workers N and --redis (Linux), N processes serve the port, sharing
it with SO_REUSEPORT and the phonebook through Redis; a worker that ends is
started again, and --metrics-port adds up the counters of all of them.

With --seed-compat, it also answers the original test-client programs on the
same port, in their text protocol, and they share the phonebook with punchd
peers. It is off by default: the original answers any source, spoofed or
not, with phonebook entries, a reflection amplifier and a privacy leak. With
it on, an original client is answered, shown to others or introduced only
once it has registered from the same address twice, a second or more apart;
each answer holds at most 16 lines and answers are rate-limited per source
address.
"""


def _redisURL(value):
    from punchd.redisstore import parseURL

    return parseURL(value)


class Options(usage.Options):
    """
    Options for C{twistd punch-server}.
    """

    synopsis = (
        "[--port PORT] [--interface ADDR] [--max-clients N] [--ttl SECONDS]"
        " [--max-names-per-address N] [--max-names-per-ip N]"
        " [--alternate-port PORT [--alternate-address ADDR]]"
        " [--metrics-port PORT [--metrics-interface ADDR]] [--hide-addresses]"
        " [--systemd-socket NAME]"
        " [--redis URL [--workers N]]"
        " [--seed-compat]"
        " [--turn-server HOST:PORT --turn-secret-file PATH [--turn-realm REALM]]"
    )
    longdesc = LONGDESC

    optFlags = [
        [
            "hide-addresses",
            None,
            "Leave peers' addresses out of the log, for their privacy.",
        ],
        [
            "seed-compat",
            None,
            "Also answer the original test-clients' text registrations (off by"
            " default: the answers can be reflected at a spoofed source).",
        ],
    ]

    optParameters = [
        ["port", "p", 8080, "UDP port to listen on.", options.named("port", options.port)],
        [
            "interface",
            "i",
            "",
            "Address to listen on. Default: every IPv4 address; :: for IPv6 and IPv4.",
            options.named("interface", options.interface),
        ],
        [
            "max-clients",
            "m",
            100000,
            "Most peers in the phonebook; when it is full, new names are refused"
            " until entries expire, and no live entry is forgotten.",
            options.named("max-clients", options.positiveInt),
        ],
        [
            "max-names-per-address",
            None,
            NAMES_PER_ADDRESS,
            "Most names one source address and port may hold.",
            options.named("max-names-per-address", options.positiveInt),
        ],
        [
            "max-names-per-ip",
            None,
            NAMES_PER_IP,
            "Most names one source IP may hold: room for the peers behind one"
            " carrier-grade NAT address.",
            options.named("max-names-per-ip", options.positiveInt),
        ],
        [
            "ttl",
            "t",
            60.0,
            "Seconds a registration lives without a refresh. Peers refresh every"
            " 20 s by default.",
            options.named("ttl", options.positiveFloat),
        ],
        [
            "alternate-port",
            None,
            None,
            "A second UDP port, for NAT behaviour discovery (RFC 5780).",
            options.named("alternate-port", options.port),
        ],
        [
            "alternate-address",
            None,
            None,
            "A second address of this host, for NAT behaviour discovery;"
            " needs --alternate-port.",
            options.named("alternate-address", options.interface),
        ],
        [
            "metrics-port",
            None,
            None,
            "TCP port to serve metrics for Prometheus on, at /metrics. Default: none.",
            options.named("metrics-port", options.port),
        ],
        [
            "metrics-interface",
            None,
            "127.0.0.1",
            "Address to serve metrics on.",
            options.named("metrics-interface", options.interface),
        ],
        [
            "secret-file",
            None,
            None,
            "A file holding a secret shared with the peers: every message must"
            " then carry a MESSAGE-INTEGRITY-SHA256 keyed from it.",
            options.named("secret-file", options.secretFile),
        ],
        [
            "registration-rate",
            None,
            SOURCE_RATE,
            "Registrations a second accepted from one proven source (address"
            " and port), with bursts of twice that; 0 for no limit.",
            options.named("registration-rate", options.rate),
        ],
        [
            "binding-rate",
            None,
            SOURCE_RATE,
            "STUN Binding requests a second answered for one source (address"
            " and port), with bursts of twice that; 0 for no limit.",
            options.named("binding-rate", options.rate),
        ],
        [
            "workers",
            None,
            1,
            "Processes to serve the port with, sharing it with SO_REUSEPORT and"
            " the phonebook through --redis (Linux).",
            options.named("workers", options.positiveInt),
        ],
        [
            "worker-of",
            None,
            None,
            "Run as one of the workers of the punch-server --workers whose id"
            " this is (it passes this itself).",
        ],
        [
            "redis",
            None,
            None,
            "Keep the phonebook in Redis, shared with every stage manager given"
            " the same URL: redis://HOST:PORT/DB or unix:///PATH.",
            options.named("redis", _redisURL),
        ],
        [
            "systemd-socket",
            None,
            None,
            "Listen on the UDP socket systemd passes under this name"
            " (FileDescriptorName=) instead of binding --port on --interface.",
        ],
        [
            "turn-server",
            None,
            None,
            "A TURN server, HOST:PORT, for the peers that cannot reach each"
            " other directly: each introduction carries credentials for it."
            " Needs --turn-secret-file.",
        ],
        [
            "turn-secret-file",
            None,
            None,
            "A file holding the TURN server's secret (coturn's"
            " --static-auth-secret), that the credentials are made from.",
            options.named("turn-secret-file", options.turnSecretFile),
        ],
        [
            "turn-realm",
            None,
            None,
            "The TURN server's realm (coturn's --realm), which peers then expect"
            " it to name.",
        ],
        [
            "turn-lifetime",
            None,
            CREDENTIAL_LIFETIME,
            "Seconds the TURN credentials of an introduction are good for; a"
            " relayed path needs a new introduction after as long.",
            options.named("turn-lifetime", options.positiveFloat),
        ],
    ]

    def __init__(self, listenFDs=None):
        """
        @param listenFDs: The L{ListenFDs} to find C{--systemd-socket} in;
            by default, those systemd passed this process.
        """
        super().__init__()
        self._listenFDs = listenFDs

    def parseOptions(self, options=None):
        # Kept for --workers, whose workers are started with the same.
        self.argv = list(sys.argv[1:] if options is None else options)
        super().parseOptions(options)

    def postOptions(self):
        self._checkTurn()
        if self["max-names-per-address"] > self["max-names-per-ip"]:
            raise usage.UsageError(
                f"--max-names-per-address ({self['max-names-per-address']}) cannot exceed"
                f" --max-names-per-ip ({self['max-names-per-ip']})"
            )
        if self["workers"] > 1 or self["worker-of"] is not None:
            option = "--workers" if self["workers"] > 1 else "--worker-of"
            if self["redis"] is None:
                raise usage.UsageError(
                    f"{option} needs --redis: the workers share their phonebook through it"
                )
            for other in ("systemd-socket", "alternate-port"):
                if self[other] is not None:
                    raise usage.UsageError(f"{option} cannot go with --{other}")
            if not reusePortAvailable():
                raise usage.UsageError(f"{option} needs Linux's SO_REUSEPORT")
        if self["redis"] is not None:
            if self["seed-compat"]:
                raise usage.UsageError(
                    "--seed-compat cannot go with --redis: the original clients'"
                    " entries are kept by one stage manager alone"
                )
            if find_spec("txredisapi") is None:
                raise usage.UsageError(
                    "--redis needs txredisapi, which is not installed:"
                    " pip install 'punchd[redis]'"
                )
        if self["secret-file"] is not None:
            for option in ("seed-compat", "alternate-port"):
                if self[option]:
                    raise usage.UsageError(
                        f"--secret-file cannot go with --{option}: its clients"
                        " cannot carry the shared secret"
                    )
        name = self["systemd-socket"]
        if name is not None:
            listenFDs = self._listenFDs
            if listenFDs is None:
                listenFDs = ListenFDs.fromEnvironment()
            try:
                inherited = inheritedDatagramSocket(listenFDs, name)
            except ValueError as e:
                raise usage.UsageError(f"--systemd-socket: {e}") from None
            self["systemd-socket"] = inherited
            self["interface"], self["port"] = inherited.address
        alternatePort = self["alternate-port"]
        alternateAddress = self["alternate-address"]
        if alternatePort is None:
            if alternateAddress is not None:
                raise usage.UsageError("--alternate-address needs --alternate-port")
            return
        if alternatePort in (0, self["port"]):
            raise usage.UsageError(
                f"--alternate-port must be a port other than --port, not {alternatePort}"
            )
        interface = self["interface"]
        if interface in ("", "0.0.0.0", "::"):
            raise usage.UsageError(
                "--interface must be a specific address with --alternate-port:"
                " the answers name it"
            )
        if alternateAddress is not None:
            if alternateAddress == interface:
                raise usage.UsageError("--alternate-address must differ from --interface")
            if ip_address(alternateAddress).version != ip_address(interface).version:
                raise usage.UsageError(
                    "--alternate-address must be of the same family as --interface"
                )


    def _checkTurn(self):
        server, secret = self["turn-server"], self["turn-secret-file"]
        if server is None:
            for option in ("turn-secret-file", "turn-realm"):
                if self[option] is not None:
                    raise usage.UsageError(f"--{option} needs --turn-server")
            return
        if secret is None:
            raise usage.UsageError(
                "--turn-server needs --turn-secret-file: the secret the TURN"
                " server checks the credentials with"
            )
        try:
            self["turn-server"] = resolve(*splitHostPort(server))
        except ValueError as e:
            raise usage.UsageError(f"--turn-server: {e}") from None
        realm = self["turn-realm"]
        if realm is not None and not 0 < len(realm.encode("utf-8", "replace")) <= MAX_TURN_TEXT_BYTES:
            raise usage.UsageError(
                f"--turn-realm: from 1 to {MAX_TURN_TEXT_BYTES} bytes, not {realm!r}"
            )


def _shared(config, reactor):
    """
    The parts of a stage manager that shares its phonebook in Redis: the
    phonebook, the cookies (whose key is shared through it, see
    L{punchd.redisstore.shareKeys}), the relay of introductions, and the
    store.
    """
    from punchd.redisbook import RedisPhonebook
    from punchd.redisstore import RedisStore
    from punchd.relay import IntroductionRelay

    store = RedisStore(config["redis"], reactor)
    # This stage manager among those sharing the phonebook: entries it
    # holds say so, and introductions for them come on its channel.
    holder = os.urandom(4).hex()
    phonebook = RedisPhonebook(
        store,
        config["max-clients"],
        config["ttl"],
        holder,
        namesPerAddress=config["max-names-per-address"],
        namesPerIP=config["max-names-per-ip"],
    )
    return phonebook, Cookies(reactor), IntroductionRelay(store, holder), store


def makeService(config, reactor=None):
    """
    Build the stage manager's service from parsed L{Options}.

    @return: The stage manager's own port: a L{DatagramServer}, or under
        C{--systemd-socket} an L{AdoptedDatagramPort}, either with the
        L{StageManagerProtocol} as its C{protocol}.  With NAT behaviour
        discovery, metrics or C{--redis}, a L{service.MultiService} of the
        L{punchd.redisstore.RedisStore} (with C{--redis}), that port, then
        a L{DatagramServer} for each alternate address and port, then the
        L{MetricsService}.
    """
    if reactor is None:
        from twisted.internet import reactor
    discovery = None
    if config["alternate-port"] is not None:
        discovery = BehaviourDiscovery(
            (config["interface"], config["port"]),
            config["alternate-port"],
            config["alternate-address"],
        )
    shared = []
    cookies = relay = store = None
    if config["redis"] is not None:
        phonebook, cookies, relay, store = _shared(config, reactor)
        shared.append(store)
    else:
        phonebook = Phonebook(
            config["max-clients"],
            config["ttl"],
            config["max-names-per-address"],
            config["max-names-per-ip"],
        )
    dialects = (OriginalClients(reactor),) if config["seed-compat"] else ()
    protocol = StageManagerProtocol(
        reactor,
        phonebook,
        discovery=discovery,
        dialects=dialects,
        logAddresses=not config["hide-addresses"],
        registrationLimit=sourceLimiter(config["registration-rate"]),
        bindingLimit=sourceLimiter(config["binding-rate"]),
        key=config["secret-file"],
        cookies=cookies,
        relay=relay,
        turn=None
        if config["turn-server"] is None
        else RelayOffer(
            config["turn-server"],
            config["turn-secret-file"],
            config["turn-realm"],
            config["turn-lifetime"],
        ),
    )
    if store is not None:
        from punchd.redisstore import shareKeys

        shareKeys(store, {b"cookies": cookies.useKey, b"names": protocol.useNameKey})
    if config["worker-of"] is not None:
        dieWithParent()
    if config["workers"] > 1 or config["worker-of"] is not None:
        primary = ReusePortDatagramServer(
            config["port"], protocol, config["interface"], reactor
        )
    elif config["systemd-socket"] is not None:
        primary = AdoptedDatagramPort(config["systemd-socket"], protocol, reactor)
    else:
        primary = DatagramServer(
            config["port"], protocol, interface=config["interface"], reactor=reactor
        )
    others = []
    workerStats = None
    if config["workers"] > 1 or config["worker-of"] is not None:
        group = config["worker-of"] or relay.holder
        workerStats = WorkerStats(
            store, group, relay.holder, protocol, reactor, report=config["worker-of"] is not None
        )
        others.append(workerStats)
    if discovery is not None:
        for _, (host, port), socket in discovery.alternateSockets(protocol.drops):
            others.append(DatagramServer(port, socket, interface=host, reactor=reactor))
    if config["workers"] > 1:
        others.append(
            WorkerPool(
                config["workers"] - 1,
                primary,
                getattr(config, "argv", []),
                reactor,
                relay.holder,
                twistdArgs=twistdArguments(sys.argv[: sys.argv.index("punch-server")])
                if "punch-server" in sys.argv
                else None,
            )
        )
    if config["metrics-port"] is not None:
        others.append(
            MetricsService(
                protocol,
                config["metrics-port"],
                config["metrics-interface"],
                reactor,
                workers=workerStats,
            )
        )
    if not others and not shared:
        return primary
    top = service.MultiService()
    # The store starts before the port and stops after it.
    for child in shared + [primary] + others:
        child.setServiceParent(top)
    return top
