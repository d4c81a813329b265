"""
C{twistd punch-server}: options and service wiring for the stage manager.
"""

from twisted.application import internet
from twisted.python import usage

from punchd import options
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol

LONGDESC = """\
Run the stage manager: the rendezvous server punchd peers register with.

It keeps a phonebook of peer names and the public addresses their NATs
showed it, and when two peers ask for each other it introduces them, both
at once, so they can punch a direct UDP path. It carries none of their
traffic. It also answers plain STUN Binding requests from any STUN client.

Run it where peers can reach its UDP port, e.g.:

    twistd -n punch-server --port 8080
"""


class Options(usage.Options):
    """
    Options for C{twistd punch-server}.
    """

    synopsis = "[--port PORT] [--interface ADDR] [--max-clients N] [--ttl SECONDS]"
    longdesc = LONGDESC

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
            "Most peers in the phonebook; when it is full, a new peer replaces"
            " the least recently seen.",
            options.named("max-clients", options.positiveInt),
        ],
        [
            "ttl",
            "t",
            60.0,
            "Seconds a registration lives without a refresh. Peers refresh every"
            " 20 s by default.",
            options.named("ttl", options.positiveFloat),
        ],
    ]


def makeService(config, reactor=None):
    """
    Build the stage manager's service from parsed L{Options}.
    """
    if reactor is None:
        from twisted.internet import reactor
    protocol = StageManagerProtocol(
        reactor, Phonebook(config["max-clients"], config["ttl"])
    )
    return internet.UDPServer(
        config["port"], protocol, interface=config["interface"], reactor=reactor
    )
