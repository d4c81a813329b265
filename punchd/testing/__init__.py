"""
An in-memory UDP network with simulated NATs, for testing hole punching
without sockets.

A L{Network} is the public internet.  L{Network.host} puts a L{Host} on it,
or on the private network behind a L{NAT} made by L{Network.nat}.  A host is
the reactor of the programs on it: it provides C{IReactorUDP}, so real
C{DatagramProtocol}s listen on it, and C{IReactorTime}, reading the time of
the network's L{twisted.internet.task.Clock}.  Nothing moves until the test
advances time::

    network = Network(latency=0.25)
    nat = network.nat("203.0.113.1", **symmetric())
    alice = network.host("192.168.1.2", behind=nat)
    server = network.host("198.51.100.1")
    server.listenUDP(3478, SomeServerProtocol(clock=server))
    alice.listenUDP(5000, SomePeerProtocol(clock=alice))
    network.advance(1)
    nat.mappingFor("192.168.1.2", 5000)  # the Mapping, or None
    network.dropped(FILTERED)  # the Datagrams a NAT turned away

Networks, or I{realms}: the public internet is one; the private network
behind each NAT is another, holding the hosts (and NATs) behind it.  An
address names one machine in its realm, so two private networks may both
have a 192.168.1.2.

Links and time: every host and every NAT is attached to its realm by a link
with a one-way latency and a loss probability (by default the network's).
A NAT's link is its public side; it sits at the heart of its private network,
so a datagram from behind it reaches it after the sender's own link.  The
one-way delay of a path is the sum of the latencies of the links it crosses:

    - between two hosts in one realm: C{sender.latency + receiver.latency};
    - from alice behind C{natA} to a public server: C{alice.latency +
      natA.latency + server.latency}; between two NATs, C{alice.latency +
      natA.latency + natB.latency + bob.latency};
    - hairpinned through the NAT both are behind: C{alice.latency +
      bob.latency};
    - to the sending host's own address: no link, no delay.

Each link a datagram crosses drops it with that link's probability, decided
by the network's seeded L{random.Random}, so a run is the same every time.
Datagrams move link by link on the clock, and a NAT translates and filters a
datagram at the moment it gets there.  Even a path of zero delay is travelled
on the clock: advance it, by zero if need be, to deliver.

Advance time with L{Network.advance} rather than the clock's own
C{advance}: C{Clock.advance} runs everything that falls due in the time it
skips with the clock already at the end of it, so a reply sent from
C{datagramReceived} would leave at the end time, not at the arrival time,
and a C{LoopingCall} would skip beats.  L{Network.advance} stops at each
call's time; L{Network.flush} advances until every datagram has arrived.
Latencies that are sums of powers of two (0.25, 0.125, 1) add up exactly in
floating point, so arrival times can be asserted with C{assertEqual}.

NAT behaviour follows RFC 4787: see L{Network.nat}, and L{fullCone},
L{restrictedCone}, L{portRestrictedCone} and L{symmetric} for the classic
kinds.

Every datagram ends up as one L{Datagram} in L{Network.traffic}: delivered,
or dropped with the reason, where and when.

The simulation is IPv4.  A port listening on C{"::"} behaves like a
dual-stack socket: it reports IPv4 senders as C{"::ffff:a.b.c.d"} and must be
written to in that form.  Broadcast, multicast, ICMP errors (so
C{connectionRefused}) and IP fragmentation are not simulated.

The package has a module for each job, and each module imports only the ones
listed after it:

    - L{punchd.testing.network}: L{Network}, the links between its hosts and
      NATs, and each datagram's way over them;
    - L{punchd.testing.hosts}: L{Host}, a machine and the reactor of the
      programs on it;
    - L{punchd.testing.udp}: L{FakeUDPPort}, a UDP port of a host;
    - L{punchd.testing.nat}: L{NAT} and its L{Mapping}s, the mapping,
      filtering and port allocation behaviours, and the presets;
    - L{punchd.testing.realms}: the public internet and the private networks
      behind NATs, in each of which an address names one machine;
    - L{punchd.testing.traffic}: L{Datagram} and the outcomes it records.

Import from C{punchd.testing} itself: it has the public names of all of
these modules but L{punchd.testing.realms}, whose realms are the
simulation's own business.
"""

from punchd.testing.hosts import EPHEMERAL_PORTS, Host
from punchd.testing.nat import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    NAT,
    NAT_PORTS,
    PRESERVING,
    RANDOM,
    SEQUENTIAL,
    Mapping,
    fullCone,
    portRestrictedCone,
    restrictedCone,
    symmetric,
)
from punchd.testing.network import Network
from punchd.testing.traffic import (
    DELIVERED,
    FILTERED,
    HAIRPINNING_DISABLED,
    LOST,
    NO_MAPPING,
    NO_ROUTE,
    NOT_CONNECTED,
    PORT_UNREACHABLE,
    PORTS_EXHAUSTED,
    SENDER_CLOSED,
    Datagram,
)
from punchd.testing.udp import FakeUDPPort

__all__ = [
    "ENDPOINT_INDEPENDENT",
    "ADDRESS_DEPENDENT",
    "ADDRESS_AND_PORT_DEPENDENT",
    "PRESERVING",
    "SEQUENTIAL",
    "RANDOM",
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
    "EPHEMERAL_PORTS",
    "NAT_PORTS",
    "fullCone",
    "restrictedCone",
    "portRestrictedCone",
    "symmetric",
    "Network",
    "Host",
    "FakeUDPPort",
    "NAT",
    "Mapping",
    "Datagram",
]
