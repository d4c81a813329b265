"""
C{twistd punch-peer}: options and service wiring for a peer.
"""

import socket
from ipaddress import IPv4Address, ip_address

from twisted.application.service import MultiService
from twisted.python import usage

from punchd import options
from punchd.addresses import (
    formatAddress,
    localAddressTowards,
    parsePort,
    resolve,
    resolveFamilies,
    splitHostPort,
)
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.messages import MAX_CONTACTS, InvalidMessage, validateName
from punchd.natprobe import NATReportProtocol
from punchd.compat.protocol import MAX_DATAGRAM, fitsLine
from punchd.peer import PeerProtocol
from punchd.portmap import SERVER_PORT as PORT_MAPPING_PORT, defaultGateway
from punchd.compat.client import SeedPeerProtocol
from punchd.compat.peer import OriginalPeers
from punchd.forwarding import Forwarder
from punchd.services import DatagramServer
from punchd.sideports import quietListenUDP

LONGDESC = """\
Run a peer: register NAME with the stage manager at HOST:PORT, and when the
peer named by --peer registers asking for NAME too, punch a direct UDP path
to it through both NATs. With the path up, each peer sends the other a
direct message once a second and prints each one it receives, with its
source address; the stage manager carries none of it.

    twistd -n punch-peer --server stage.example.net:8080 --name alice --peer bob
    twistd -n punch-peer --server stage.example.net:8080 --name bob --peer alice

--peer may be given several times: the peer keeps a path to each contact,
all from one UDP port.

    twistd -n punch-peer --server stage.example.net:8080 --name alice \
        --peer bob --peer carol

With --probe, it instead asks a stage manager that offers NAT behaviour
discovery (punch-server --alternate-port ... --alternate-address ...) how the
NAT in front of this machine maps and filters, says in plain words what that
means for hole punching, and exits:

    twistd -n punch-peer --server stage.example.net:8080 --probe

With --forward, a path carries a local program's datagrams instead of the
direct message: every datagram sent to 127.0.0.1:51821 goes to the contact,
and every datagram from the contact is sent from that port to --deliver (or,
without it, to the local program that last sent to the port). WireGuard
listening on 51820, with its peer's endpoint at 127.0.0.1:51821, reaches its
peer behind the other NAT this way:

    twistd -n punch-peer --server stage.example.net:8080 --name alice --peer bob \\
        --forward 51821 --deliver 127.0.0.1:51820

With several contacts, NAME= says whose path each port forwards to:

    twistd -n punch-peer --server stage.example.net:8080 --name alice \\
        --peer bob --peer carol --forward bob=51821 --forward carol=51822

With --port-mapping, it asks the router (the default route's gateway, or
--gateway) for a port mapping with PCP or NAT-PMP, renews it, deletes it at
stop, and offers the mapped address to every contact: a peer behind a
symmetric NAT whose router grants one can be reached by any contact.

    twistd -n punch-peer --server stage.example.net:8080 --name alice \\
        --peer bob --port-mapping

With --seed-compat, it instead speaks the original test-client's text
protocol, to an original test-server (or a punch-server --seed-compat): it
registers with its bare name, reads the phonebook lines, and exchanges the
original's unauthenticated text messages with its contact.
"""


def _name(option):
    def coerce(value):
        try:
            return validateName(value.encode("utf-8"))
        except InvalidMessage as e:
            raise ValueError(e.reason) from None

    return options.named(option, coerce)


#: Where C{--forward PORT} listens without a HOST: only programs on this
#: machine may send to the contact.
FORWARD_HOST = "127.0.0.1"


def _contactAnd(text: str):
    """
    Split C{[NAME=]REST}: a NAME may hold C{=}, and an address cannot.

    @return: C{(name or None, rest)}.
    """
    name, sep, rest = text.rpartition("=")
    return (name if sep else None), rest


def _forwardAddress(text: str):
    """
    The address C{[HOST:]PORT} of C{--forward}, resolved, HOST
    L{FORWARD_HOST} if not given.

    @raise ValueError: If it is not of that form or does not resolve.
    """
    if ":" in text:
        return resolve(*splitHostPort(text))
    return FORWARD_HOST, parsePort(text)


def _deliverAddress(text: str):
    """
    The address C{HOST:PORT} of C{--deliver}, resolved.

    @raise ValueError: If it is not of that form or does not resolve.
    """
    return resolve(*splitHostPort(text))


def _checkListenable(address):
    """
    Bind a UDP socket to C{address}, and close it.

    @raise ValueError: If it cannot be bound, saying why: in use, or not an
        address of this machine.
    """
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind(address)
        except OSError as e:
            raise ValueError(f"cannot listen on {formatAddress(address)}: {e.strerror}") from None


def _ipv4(value: str) -> str:
    """
    An IPv4 address literal.
    """
    try:
        return str(IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


#: Where Linux lists its IPv4 routes.
ROUTE_TABLE = "/proc/net/route"


def _routerAddress(path=ROUTE_TABLE) -> "str | None":
    """
    The default route's gateway on this machine, or L{None}.
    """
    try:
        with open(path) as f:
            return defaultGateway(f.read())
    except OSError:
        return None


class Options(usage.Options):
    """
    Options for C{twistd punch-peer}.

    After parsing, C{self["server"]} is the stage manager's resolved
    C{(address, port)}, and C{self["fallbacks"]} those of the stage
    managers given after it.
    """

    synopsis = (
        "--server HOST:PORT (--name NAME --peer NAME [--seed-compat] [options] | --probe)"
    )
    longdesc = LONGDESC

    optFlags = [
        ["probe", None, "Report how the NAT in front of this machine behaves, then exit."],
        [
            "seed-compat",
            None,
            "Speak the original test-client's text protocol, to an original test-server.",
        ],
        [
            "port-mapping",
            None,
            "Ask the router for a port mapping (PCP, then NAT-PMP), keep it while"
            " running, and offer it to the contacts. IPv4 only.",
        ],
    ]

    optParameters = [
        ["name", "n", None, "This peer's name: up to 64 bytes, no spaces.", _name("name")],
        [
            "gateway",
            None,
            None,
            "With --port-mapping, the router's IPv4 address. Default: the gateway"
            " of the default route (from /proc/net/route).",
            options.named("gateway", _ipv4),
        ],
        [
            "port",
            None,
            0,
            "Local UDP port. Default: any free port.",
            options.named("port", options.port),
        ],
        [
            "interval",
            "i",
            20.0,
            "Seconds between registrations; they also keep the NAT's mapping"
            " to the stage manager alive.",
            options.named("interval", options.positiveFloat),
        ],
        [
            "message",
            "m",
            None,
            f"The direct message to send: up to {MAX_PAYLOAD_BYTES} bytes of UTF-8"
            f" ({MAX_DATAGRAM} with --seed-compat). Default: \"This is a direct P2P"
            ' message from NAME to PEER".',
        ],
        [
            "punch-timeout",
            None,
            5.0,
            "Seconds to punch before reporting failure.",
            options.named("punch-timeout", options.positiveFloat),
        ],
        [
            "secret-file",
            None,
            None,
            "A file holding the secret shared with the stage manager"
            " (punch-server --secret-file).",
            options.named("secret-file", options.secretFile),
        ],
        [
            "peer-secret-file",
            None,
            None,
            "A file holding a secret shared out of band with the peer to reach"
            " (at least 16 bytes): the names registered and the path's key are"
            " derived from it, so that nobody else, the stage manager included,"
            " can pass for that peer. Nothing is encrypted.",
            options.named("peer-secret-file", options.peerSecretFile),
        ],
        [
            "keepalive",
            None,
            5.0,
            "Seconds between keepalives on a direct path; it is reported lost"
            " after three times as long without a word from the peer.",
            options.named("keepalive", options.positiveFloat),
        ],
        # Each of these two may be given once for each contact: the rows
        # give the help, which a docstring of several lines would not lay
        # out, and the opt_ methods below take every value.
        [
            "forward",
            None,
            None,
            "[NAME=][HOST:]PORT: carry a local program's datagrams instead of the"
            f" direct message: listen on HOST (default {FORWARD_HOST}) at PORT, and"
            " send every datagram that arrives there to the contact NAME (default:"
            " the one --peer) over its path. Once for each contact.",
        ],
        [
            "deliver",
            None,
            None,
            "[NAME=]HOST:PORT: send every datagram from the contact NAME (default:"
            " the one --peer) to HOST:PORT, from its --forward port. Default: to the"
            " local program that last sent to that port.",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["peer"] = []
        self["server"] = None
        self["servers"] = []
        self["forward"] = []
        self["deliver"] = []

    def opt_peer(self, name):
        """
        The name of a peer to reach (a contact); give it once per contact.
        """
        self["peer"].append(_name("peer")(name))

    opt_c = opt_peer

    def opt_server(self, server):
        """
        The stage manager, HOST:PORT. HOST is a name or an address; an IPv6
        address goes in brackets: [2001:db8::1]:8080. A name with both an
        A and an AAAA record makes the peer dual-stack: it listens on ::,
        registers its public address of each family, and punches both
        (punch-server --interface :: takes both). Given again, more
        stage managers: the peer registers with the first, and moves to the
        next when the one it registers with stops answering.
        """
        self["servers"].append(server)
        if self["server"] is None:
            self["server"] = server

    opt_s = opt_server

    def opt_forward(self, value):
        self["forward"].append(value)

    def opt_deliver(self, value):
        self["deliver"].append(value)

    def postOptions(self):
        required = ("server",) if self["probe"] else ("server", "name")
        for option in required:
            if self[option] is None:
                raise usage.UsageError(f"--{option} is required")
        peers = self["peer"]
        if not self["probe"] and not peers:
            raise usage.UsageError("--peer is required")
        if len(set(peers)) != len(peers):
            raise usage.UsageError(f"--peer: a contact named twice ({', '.join(peers)})")
        if len(peers) > MAX_CONTACTS:
            raise usage.UsageError(
                f"--peer: {len(peers)} contacts, the most is {MAX_CONTACTS}"
            )
        if self["secret-file"] is not None:
            for option in ("probe", "seed-compat"):
                if self[option]:
                    raise usage.UsageError(f"--secret-file cannot go with --{option}")
        if self["peer-secret-file"] is not None:
            for option in ("probe", "seed-compat"):
                if self[option]:
                    raise usage.UsageError(f"--peer-secret-file cannot go with --{option}")
        if self["seed-compat"]:
            if self["probe"]:
                raise usage.UsageError("--probe needs a punch-server, not --seed-compat")
            if len(peers) > 1:
                raise usage.UsageError(
                    "--peer: the original test-client has one contact; --seed-compat"
                    " takes one --peer"
                )
            for option, value in (("name", self["name"]), *(("peer", p) for p in peers)):
                if not fitsLine(value):
                    raise usage.UsageError(
                        f"--{option}: {value!r} has a comma, which the"
                        " original's phonebook lines cannot carry"
                    )
        if self["message"] is not None:
            self._checkMessage()
        if self["name"] is not None and self["name"] in peers:
            raise usage.UsageError(
                f"--peer must name another peer, not this one ({self['name']})"
            )
        if len(self["servers"]) > 1:
            for option in ("probe", "seed-compat"):
                if self[option]:
                    raise usage.UsageError(f"--server: given twice, which --{option} cannot use")
        resolved = []
        self["secondServer"] = None
        for server in self["servers"]:
            try:
                families = resolveFamilies(*splitHostPort(server))
            except ValueError as e:
                raise usage.UsageError(f"--server: {e}") from None
            resolved.append(families[0])
            if len(resolved) == 1 and len(families) == 2 and not (self["seed-compat"] or self["probe"]):
                # A name with an A and an AAAA record: both families.
                self["secondServer"] = families[1]
        if len(set(resolved)) != len(resolved):
            raise usage.UsageError(f"--server: a stage manager given twice ({', '.join(self['servers'])})")
        self["server"], *self["fallbacks"] = resolved
        self._checkPortMapping()
        if self["seed-compat"] and ":" in self["server"][0]:
            raise usage.UsageError(
                f"--server: {self['server'][0]} is IPv6; the original test-server"
                " speaks IPv4 only"
            )
        self._checkForwarding()

    def _checkForwarding(self):
        """
        Parse C{--forward} and C{--deliver} into C{{contact: (host,
        port)}}, each address resolved and each forwarding port free.
        """
        if not self["forward"]:
            if self["deliver"]:
                raise usage.UsageError(
                    "--deliver needs --forward: datagrams from the contact are"
                    " delivered from the forwarding port"
                )
            self["forward"], self["deliver"] = {}, {}
            return
        for option in ("probe", "seed-compat"):
            if self[option]:
                raise usage.UsageError(f"--forward cannot go with --{option}")
        self["forward"] = self._byContact("forward", _forwardAddress)
        self["deliver"] = self._byContact("deliver", _deliverAddress)
        if self["message"] is not None and len(self["forward"]) == len(self["peer"]):
            raise usage.UsageError(
                "--message cannot go with a --forward for every --peer: the paths"
                " carry the local programs' datagrams, not the direct message"
            )
        listening = {}
        for name, local in self["forward"].items():
            if local[1] == self["port"]:
                raise usage.UsageError(
                    f"--forward: port {local[1]} is this peer's own --port too"
                )
            if local in listening:
                raise usage.UsageError(
                    f"--forward: {formatAddress(local)} for both {listening[local]} and {name}"
                )
            listening[local] = name
            try:
                _checkListenable(local)
            except ValueError as e:
                raise usage.UsageError(f"--forward: {e}") from None
        for name, deliver in self["deliver"].items():
            local = self["forward"].get(name)
            if local is None:
                raise usage.UsageError(
                    f"--deliver: {name} has no --forward, whose port delivers its datagrams"
                )
            if (":" in deliver[0]) != (":" in local[0]):
                raise usage.UsageError(
                    f"--deliver: {deliver[0]} is not of the family of {local[0]},"
                    " where --forward listens"
                )
            if deliver in listening:
                raise usage.UsageError(
                    f"--deliver: {formatAddress(deliver)} is a --forward port itself"
                )
            if ip_address(local[0]).is_loopback and not ip_address(deliver[0]).is_loopback:
                # The kernel will not send from a loopback address to
                # another machine.
                raise usage.UsageError(
                    f"--deliver: {deliver[0]} is not on this machine, and --forward"
                    f" listens on {local[0]}; give --forward a HOST that reaches it"
                )

    def _byContact(self, option, parse):
        """
        The values of C{option}, each C{[NAME=]VALUE}, parsed by contact.

        @param parse: A function of the VALUE returning the address or
            raising L{ValueError}.
        @return: C{{contact: address}}.
        """
        peers = self["peer"]
        found = {}
        for value in self[option]:
            name, address = _contactAnd(value)
            if name is None:
                if len(peers) != 1:
                    raise usage.UsageError(
                        f"--{option}: {value} names no contact; with several --peer,"
                        f" write NAME={value}"
                    )
                name = peers[0]
            elif name not in peers:
                raise usage.UsageError(
                    f"--{option}: {name}= names no --peer (the contacts: {', '.join(peers)})"
                )
            if name in found:
                raise usage.UsageError(f"--{option}: given twice for {name}")
            try:
                found[name] = parse(address)
            except ValueError as e:
                raise usage.UsageError(f"--{option}: {e}") from None
        return found

    def _checkPortMapping(self):
        """
        Check C{--port-mapping} and C{--gateway}, and set C{portMapping}
        to the L{PeerProtocol}'s C{portMapping}: the router and our address
        on its network, found once here; or L{None}.
        """
        self["portMapping"] = None
        if not self["port-mapping"]:
            if self["gateway"] is not None:
                raise usage.UsageError("--gateway needs --port-mapping")
            return
        for option in ("probe", "seed-compat"):
            if self[option]:
                raise usage.UsageError(f"--port-mapping cannot go with --{option}")
        if ":" in self["server"][0]:
            raise usage.UsageError(
                f"--port-mapping: the stage manager {self['server'][0]} is IPv6;"
                " port mapping here is for IPv4"
            )
        if self["gateway"] is None:
            self["gateway"] = _routerAddress()
            if self["gateway"] is None:
                raise usage.UsageError(
                    f"--port-mapping: no default route in {ROUTE_TABLE} to find the"
                    " router by; give --gateway"
                )
        clientHost = localAddressTowards((self["gateway"], PORT_MAPPING_PORT))
        if clientHost is None:
            raise usage.UsageError(f"--gateway: no route to {self['gateway']}")
        self["portMapping"] = (self["gateway"], clientHost)

    def _checkMessage(self):
        # Checked here rather than cut when sent: a message cut short is
        # not the message asked for.
        limit = MAX_DATAGRAM if self["seed-compat"] else MAX_PAYLOAD_BYTES
        try:
            size = len(self["message"].encode("utf-8"))
        except UnicodeEncodeError:
            raise usage.UsageError("--message: the text is not UTF-8") from None
        if size > limit:
            raise usage.UsageError(
                f"--message: {size} bytes of UTF-8, the limit is {limit} bytes"
                + (" with --seed-compat" if self["seed-compat"] else "")
            )


class PeerService(DatagramServer):
    """
    A peer's UDP port, which says goodbye to the stage manager before it
    closes.
    """

    def stopService(self):
        self.protocol.leave()
        return super().stopService()


def makeService(config, reactor=None):
    """
    Build a peer's service from parsed L{Options}.

    @return: A L{DatagramServer} whose C{protocol} is the L{PeerProtocol}
        (in a L{PeerService}), the L{SeedPeerProtocol} with C{--seed-compat}
        (in a L{PeerService} too), or the L{NATReportProtocol} with
        C{--probe}.  With C{--forward}, a L{MultiService}: a
        L{DatagramServer} named C{"forward NAME"} for each contact
        forwarded, whose protocol is the L{Forwarder} on that contact's
        paths, then the L{PeerService}, named C{"peer"}.
    """
    if reactor is None:
        from twisted.internet import reactor
    server = config["server"]
    local = localAddressTowards(server)
    localHosts = () if local is None else (local,)
    interface = "::" if ":" in server[0] or config["secondServer"] is not None else ""
    if config["seed-compat"]:
        seedPeer = SeedPeerProtocol(
            reactor,
            server,
            config["name"],
            config["peer"][0],
            interval=config["interval"],
            text=config["message"],
            pathTimeout=3 * config["keepalive"],
        )
        return PeerService(config["port"], seedPeer, interface="", reactor=reactor)
    if config["probe"]:
        report = NATReportProtocol(reactor, server, localHosts, reactor.stop)
        return DatagramServer(config["port"], report, interface=interface, reactor=reactor)
    text = config["message"]
    forwarders = {
        name: Forwarder(reactor, name, deliver=config["deliver"].get(name))
        for name in config["forward"]
    }
    protocol = PeerProtocol(
        reactor,
        server,
        config["name"],
        config["peer"],
        localHosts=localHosts,
        interval=config["interval"],
        text=text,
        # An original test-client cannot prove the shared secret, and
        # carries only its text messages, not a forwarded program's.
        dialects=()
        if config["peer-secret-file"] is not None or forwarders
        else (
            OriginalPeers(
                text,
                pathTimeout=3 * config["keepalive"],
                punchTimeout=config["punch-timeout"],
            ),
        ),
        applications=forwarders,
        listenUDP=quietListenUDP(reactor),
        punchTimeout=config["punch-timeout"],
        keepaliveInterval=config["keepalive"],
        pathTimeout=3 * config["keepalive"],
        key=config["secret-file"],
        peerSecret=config["peer-secret-file"],
        fallbacks=config["fallbacks"],
        portMapping=config["portMapping"],
        secondServer=config["secondServer"],
    )
    peer = PeerService(config["port"], protocol, interface=interface, reactor=reactor)
    if not forwarders:
        return peer
    service = MultiService()
    # Started first and stopped last, so that a forwarding port is open
    # whenever its path may bring a datagram.
    for name, forwarder in forwarders.items():
        host, port = config["forward"][name]
        forward = DatagramServer(port, forwarder, interface=host, reactor=reactor)
        forward.setName(f"forward {name}")
        forward.setServiceParent(service)
    peer.setName("peer")
    peer.setServiceParent(service)
    return service
