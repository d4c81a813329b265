"""
What became of each datagram on the simulated network: the outcomes, and the
L{Datagram} that records one in L{punchd.testing.Network.traffic}.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from punchd.testing.hosts import Host

__all__ = [
    "DELIVERED",
    "LOST",
    "NO_ROUTE",
    "NO_MAPPING",
    "FILTERED",
    "HAIRPINNING_DISABLED",
    "PORT_UNREACHABLE",
    "NOT_CONNECTED",
    "SENDER_CLOSED",
    "PORTS_EXHAUSTED",
    "Datagram",
]

# What became of a datagram: the outcome of a Datagram.

#: Handed to the receiving protocol.
DELIVERED = "delivered"

#: Dropped by a lossy link (the Datagram's C{where} is the L{Host} or L{NAT}
#: the link attaches).
LOST = "lost"

#: Sent to a public address that no host or NAT has.
NO_ROUTE = "no route"

#: Arrived at a NAT's public address on a port with no mapping.
NO_MAPPING = "no mapping"

#: Arrived at a NAT through a mapping whose filtering turned its sender away.
FILTERED = "filtered"

#: Sent from behind a NAT to that NAT's own public address, and the NAT does
#: not hairpin.
HAIRPINNING_DISABLED = "hairpinning disabled"

#: Arrived at a host on a port nothing listens on.
PORT_UNREACHABLE = "port unreachable"

#: Arrived at a connected port from somewhere other than the address it is
#: connected to.
NOT_CONNECTED = "not from the connected address"

#: Written to a port that had stopped listening.
SENDER_CLOSED = "sender closed"

#: A NAT had no free public port for a new mapping.
PORTS_EXHAUSTED = "no free port"


@dataclass(frozen=True)
class Datagram:
    """
    One datagram and what became of it: an entry of L{Network.traffic}.

    Addresses are the simulation's IPv4 C{(host, port)}, also for ports
    listening on C{"::"}.

    @ivar sentAt: The clock's time when the sender wrote it.
    @ivar time: When it was delivered or dropped.
    @ivar sender: The L{Host} that sent it.
    @ivar source: The sender's own C{(address, port)}.
    @ivar destination: The C{(address, port)} the sender wrote it to.
    @ivar data: The bytes sent.
    @ivar outcome: L{DELIVERED}, or why it was dropped: L{LOST},
        L{NO_ROUTE}, L{NO_MAPPING}, L{FILTERED}, L{HAIRPINNING_DISABLED},
        L{PORT_UNREACHABLE}, L{NOT_CONNECTED}, L{SENDER_CLOSED} or
        L{PORTS_EXHAUSTED}.
    @ivar where: The L{Host} it was delivered to; or where it was dropped:
        the L{Host} or L{NAT} (whose link lost it, or that refused it), or
        L{None} for L{NO_ROUTE}.
    @ivar receivedFrom: For a delivered datagram, its source as the
        receiver saw it, after any NAT rewrote it; else L{None}.
    @ivar deliveredTo: For a delivered datagram, the receiving host's
        C{(address, port)}; else L{None}.
    """

    sentAt: float
    time: float
    sender: "Host"
    source: tuple
    destination: tuple
    data: bytes
    outcome: str
    where: object = None
    receivedFrom: "tuple | None" = None
    deliveredTo: "tuple | None" = None

    @property
    def delivered(self) -> bool:
        """
        Whether it reached a protocol.
        """
        return self.outcome == DELIVERED
