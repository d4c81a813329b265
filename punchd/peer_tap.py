"""
C{twistd punch-peer}: options and service wiring for a peer.
"""

from twisted.python import usage

from punchd import options
from punchd.addresses import localAddressTowards, resolve, splitHostPort
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.messages import InvalidMessage, validateName
from punchd.natprobe import NATReportProtocol
from punchd.compat.protocol import MAX_DATAGRAM, fitsLine
from punchd.peer import PeerProtocol
from punchd.compat.client import SeedPeerProtocol
from punchd.compat.peer import OriginalPeers
from punchd.greeter import defaultMessage
from punchd.services import DatagramServer

LONGDESC = """\
Run a peer: register NAME with the stage manager at HOST:PORT, and when the
peer named by --peer registers asking for NAME too, punch a direct UDP path
to it through both NATs. With the path up, each peer sends the other a
direct message once a second and prints each one it receives, with its
source address; the stage manager carries none of it.

    twistd -n punch-peer --server stage.example.net:8080 --name alice --peer bob
    twistd -n punch-peer --server stage.example.net:8080 --name bob --peer alice

With --probe, it instead asks a stage manager that offers NAT behaviour
discovery (punch-server --alternate-port ... --alternate-address ...) how the
NAT in front of this machine maps and filters, says in plain words what that
means for hole punching, and exits:

    twistd -n punch-peer --server stage.example.net:8080 --probe

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


class Options(usage.Options):
    """
    Options for C{twistd punch-peer}.

    After parsing, C{self["server"]} is the stage manager's resolved
    C{(address, port)}.
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
    ]

    optParameters = [
        [
            "server",
            "s",
            None,
            "The stage manager, HOST:PORT. HOST is a name or an address;"
            " an IPv6 address goes in brackets: [2001:db8::1]:8080.",
        ],
        ["name", "n", None, "This peer's name: up to 64 bytes, no spaces.", _name("name")],
        ["peer", "c", None, "The name of the peer to reach (the contact).", _name("peer")],
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
    ]

    def postOptions(self):
        required = ("server",) if self["probe"] else ("server", "name", "peer")
        for option in required:
            if self[option] is None:
                raise usage.UsageError(f"--{option} is required")
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
            for option in ("name", "peer"):
                if not fitsLine(self[option]):
                    raise usage.UsageError(
                        f"--{option}: {self[option]!r} has a comma, which the"
                        " original's phonebook lines cannot carry"
                    )
        if self["message"] is not None:
            self._checkMessage()
        if self["name"] is not None and self["name"] == self["peer"]:
            raise usage.UsageError(
                f"--peer must name another peer, not this one ({self['name']})"
            )
        try:
            self["server"] = resolve(*splitHostPort(self["server"]))
        except ValueError as e:
            raise usage.UsageError(f"--server: {e}") from None
        if self["seed-compat"] and ":" in self["server"][0]:
            raise usage.UsageError(
                f"--server: {self['server'][0]} is IPv6; the original test-server"
                " speaks IPv4 only"
            )


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
        C{--probe}.
    """
    if reactor is None:
        from twisted.internet import reactor
    server = config["server"]
    local = localAddressTowards(server)
    localHosts = () if local is None else (local,)
    interface = "::" if ":" in server[0] else ""
    if config["seed-compat"]:
        seedPeer = SeedPeerProtocol(
            reactor,
            server,
            config["name"],
            config["peer"],
            interval=config["interval"],
            text=config["message"],
            pathTimeout=3 * config["keepalive"],
        )
        return PeerService(config["port"], seedPeer, interface="", reactor=reactor)
    if config["probe"]:
        report = NATReportProtocol(reactor, server, localHosts, reactor.stop)
        return DatagramServer(config["port"], report, interface=interface, reactor=reactor)
    text = config["message"]
    if text is None:
        text = defaultMessage(config["name"], config["peer"])
    protocol = PeerProtocol(
        reactor,
        server,
        config["name"],
        config["peer"],
        localHosts=localHosts,
        interval=config["interval"],
        text=text,
        # An original test-client cannot prove the shared secret.
        dialects=()
        if config["peer-secret-file"] is not None
        else (OriginalPeers(text, pathTimeout=3 * config["keepalive"]),),
        punchTimeout=config["punch-timeout"],
        keepaliveInterval=config["keepalive"],
        pathTimeout=3 * config["keepalive"],
        key=config["secret-file"],
        peerSecret=config["peer-secret-file"],
    )
    return PeerService(config["port"], protocol, interface=interface, reactor=reactor)
