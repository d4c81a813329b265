"""
NATs, after RFC 4787: the mapping and filtering behaviours and the port
allocations, presets for the classic kinds (L{fullCone}, L{restrictedCone},
L{portRestrictedCone} and L{symmetric}), and the L{NAT} with its
L{Mapping}s.
"""

from dataclasses import dataclass, field

from twisted.logger import Logger

from punchd.testing.realms import Realm
from punchd.testing.traffic import (
    FILTERED,
    HAIRPINNING_DISABLED,
    NO_MAPPING,
    PORTS_EXHAUSTED,
)

__all__ = [
    "ENDPOINT_INDEPENDENT",
    "ADDRESS_DEPENDENT",
    "ADDRESS_AND_PORT_DEPENDENT",
    "PRESERVING",
    "SEQUENTIAL",
    "RANDOM",
    "NAT_PORTS",
    "fullCone",
    "restrictedCone",
    "portRestrictedCone",
    "symmetric",
    "Mapping",
    "NAT",
]

# Mapping and filtering behaviours (RFC 4787 sections 4.1 and 5).

#: Mapping: one mapping per internal endpoint, whatever the destination.
#: Filtering: anyone may send in through a mapping.
ENDPOINT_INDEPENDENT = "endpoint-independent"

#: Mapping: one mapping per internal endpoint and destination address.
#: Filtering: only addresses the mapping has sent to may send in, from any
#: port.
ADDRESS_DEPENDENT = "address-dependent"

#: Mapping: one mapping per internal endpoint and destination address and
#: port.  Filtering: only the addresses and ports the mapping has sent to may
#: send in.
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

# Port allocation (RFC 4787 section 4.2).

#: The internal port, if no other mapping has it; else the next free port up.
PRESERVING = "preserving"

#: 1024, 1025, ... in the order mappings are made, skipping ports in use.
SEQUENTIAL = "sequential"

#: A port drawn from the network's random generator; the next free one up
#: if that is in use.
RANDOM = "random"

#: The public ports a NAT allocates mappings from.
NAT_PORTS = range(1024, 65536)


def _preset(overrides, **behaviour):
    behaviour.update(overrides)
    return behaviour


def fullCone(**overrides):
    """
    A full cone NAT: endpoint-independent mapping and filtering.

    Use it as C{network.nat(address, **fullCone())}.

    @param overrides: More keyword arguments of L{Network.nat}, or ones that
        replace the preset's.
    @return: Keyword arguments for L{Network.nat}.
    @rtype: L{dict}
    """
    return _preset(
        overrides,
        mapping=ENDPOINT_INDEPENDENT,
        filtering=ENDPOINT_INDEPENDENT,
        allocation=PRESERVING,
    )


def restrictedCone(**overrides):
    """
    A (address-)restricted cone NAT: endpoint-independent mapping,
    address-dependent filtering.

    @param overrides: More keyword arguments of L{Network.nat}, or ones that
        replace the preset's.
    @return: Keyword arguments for L{Network.nat}.
    @rtype: L{dict}
    """
    return _preset(
        overrides,
        mapping=ENDPOINT_INDEPENDENT,
        filtering=ADDRESS_DEPENDENT,
        allocation=PRESERVING,
    )


def portRestrictedCone(**overrides):
    """
    A port-restricted cone NAT: endpoint-independent mapping,
    address-and-port-dependent filtering.  This is L{Network.nat}'s default,
    and what RFC 4787 recommends.

    @param overrides: More keyword arguments of L{Network.nat}, or ones that
        replace the preset's.
    @return: Keyword arguments for L{Network.nat}.
    @rtype: L{dict}
    """
    return _preset(
        overrides,
        mapping=ENDPOINT_INDEPENDENT,
        filtering=ADDRESS_AND_PORT_DEPENDENT,
        allocation=PRESERVING,
    )


def symmetric(**overrides):
    """
    A symmetric NAT: address-and-port-dependent mapping and filtering, with
    random port allocation, so nobody can predict the port it will use
    towards a new destination.

    @param overrides: More keyword arguments of L{Network.nat}, or ones that
        replace the preset's.
    @return: Keyword arguments for L{Network.nat}.
    @rtype: L{dict}
    """
    return _preset(
        overrides,
        mapping=ADDRESS_AND_PORT_DEPENDENT,
        filtering=ADDRESS_AND_PORT_DEPENDENT,
        allocation=RANDOM,
    )


@dataclass(eq=False)
class Mapping:
    """
    A NAT's binding of an internal address and port to a public one.

    @ivar internal: The internal C{(address, port)}.
    @ivar external: The public C{(address, port)} it appears as.
    @ivar remote: For whom it was made: L{None} under endpoint-independent
        mapping, the destination address under address-dependent mapping,
        the destination C{(address, port)} under address-and-port-dependent
        mapping.
    @ivar createdAt: When it was made.
    @ivar lastUsed: When an outbound datagram last went through it.
    @ivar timeout: The NAT's C{mappingTimeout}.
    @ivar permissions: Every C{(address, port)} it has sent to, which its
        filtering admits datagrams from.
    @type permissions: L{set}
    """

    internal: tuple
    external: tuple
    remote: object
    createdAt: float
    lastUsed: float
    timeout: "float | None" = None
    permissions: set = field(default_factory=set)

    @property
    def expiresAt(self):
        """
        When it expires unless used before: L{None} for never.
        """
        if self.timeout is None:
            return None
        return self.lastUsed + self.timeout

    def liveAt(self, now) -> bool:
        """
        @return: Whether it is still there at time C{now}.
        """
        expiresAt = self.expiresAt
        return expiresAt is None or now < expiresAt


class NAT:
    """
    A NAT (a NAPT, really), with a private network behind it.

    Make NATs with L{Network.nat}, which describes the behaviours.

    Its settings are attributes; C{hairpinning}, C{latency} and C{loss} may
    be changed between datagrams.

    @ivar network: The L{Network}.
    @ivar publicAddress: Its address in the realm it is on.
    @ivar mapping: Its mapping behaviour.
    @ivar filtering: Its filtering behaviour.
    @ivar allocation: Its port allocation.
    @ivar mappingTimeout: Its mapping timeout, or L{None}.
    @ivar hairpinning: Whether it hairpins.
    @ivar latency: The one-way latency of its public link.
    @ivar loss: The probability that its public link drops a datagram.
    @ivar behind: The L{NAT} it is behind, or L{None}.
    """

    log = Logger()

    def __init__(
        self,
        network,
        publicAddress,
        mapping,
        filtering,
        allocation,
        mappingTimeout,
        hairpinning,
        latency,
        loss,
        behind,
        realm,
    ):
        self.network = network
        self.publicAddress = publicAddress
        self.mapping = mapping
        self.filtering = filtering
        self.allocation = allocation
        self.mappingTimeout = mappingTimeout
        self.hairpinning = hairpinning
        self.latency = latency
        self.loss = loss
        self.behind = behind
        self._realm = realm
        self._lan = Realm(self)
        self._byKey = {}
        self._byPort = {}
        self._nextPort = NAT_PORTS[0]

    def __repr__(self):
        return (
            f"<NAT {self.publicAddress}: {self.mapping} mapping,"
            f" {self.filtering} filtering>"
        )

    def mappings(self):
        """
        The mappings it has now, by the network clock.

        @return: L{Mapping}s, oldest first.
        @rtype: L{list}
        """
        now = self.network.clock.seconds()
        return [m for m in self._byPort.values() if m.liveAt(now)]

    def mappingFor(self, internalAddress, internalPort, remote=None):
        """
        The mapping a datagram from an internal address and port would go
        out through now.

        @param internalAddress: The address of a host behind this NAT.
        @param internalPort: Its port.
        @param remote: The destination C{(address, port)}.  It may be left
            out under endpoint-independent mapping, or when the internal
            endpoint has only one mapping.
        @return: The L{Mapping}, or L{None} if a datagram would get a new one.
        @raise ValueError: If C{remote} is left out and the endpoint has more
            than one mapping.
        """
        internal = (internalAddress, internalPort)
        if remote is not None or self.mapping == ENDPOINT_INDEPENDENT:
            mapping = self._byKey.get(self._key(internal, remote))
            if mapping is None or not mapping.liveAt(self.network.clock.seconds()):
                return None
            return mapping
        found = [m for m in self.mappings() if m.internal == internal]
        if len(found) > 1:
            raise ValueError(
                f"{internalAddress}:{internalPort} has {len(found)} mappings;"
                " say which remote address"
            )
        return found[0] if found else None

    def clearMappings(self):
        """
        Forget every mapping, as a NAT does when it restarts.
        """
        self._byKey.clear()
        self._byPort.clear()

    def _key(self, internal, remote):
        if self.mapping == ENDPOINT_INDEPENDENT:
            return (internal, None)
        if self.mapping == ADDRESS_DEPENDENT:
            return (internal, remote[0])
        return (internal, tuple(remote))

    def _expire(self, at):
        if self.mappingTimeout is None:
            return
        for key, mapping in list(self._byKey.items()):
            if not mapping.liveAt(at):
                del self._byKey[key]
                del self._byPort[mapping.external[1]]

    def _allocate(self, internalPort):
        """
        @return: A free public port, or L{None} if none is.
        """
        if self.allocation == PRESERVING:
            port = internalPort
        elif self.allocation == SEQUENTIAL:
            port = self._nextPort
        else:
            port = self.network.random.randrange(NAT_PORTS[0], NAT_PORTS[-1] + 1)
        for _ in range(len(NAT_PORTS) + 1):
            if port not in self._byPort:
                break
            port = port + 1 if port < NAT_PORTS[-1] else NAT_PORTS[0]
        else:
            return None
        if self.allocation == SEQUENTIAL:
            self._nextPort = port + 1 if port < NAT_PORTS[-1] else NAT_PORTS[0]
        return port

    def _admits(self, mapping, source):
        if self.filtering == ENDPOINT_INDEPENDENT:
            return True
        if self.filtering == ADDRESS_DEPENDENT:
            return any(address == source[0] for address, _ in mapping.permissions)
        return source in mapping.permissions

    def _translateOutbound(self, at, packet):
        """
        Find or make the mapping for C{packet}, and give the packet its
        public source.

        @return: Whether it could.
        """
        self._expire(at)
        key = self._key(packet.src, packet.dst)
        mapping = self._byKey.get(key)
        if mapping is None:
            port = self._allocate(packet.src[1])
            if port is None:
                self.network._record(at, packet, PORTS_EXHAUSTED, self)
                return False
            mapping = Mapping(
                internal=packet.src,
                external=(self.publicAddress, port),
                remote=key[1],
                createdAt=at,
                lastUsed=at,
                timeout=self.mappingTimeout,
            )
            self._byKey[key] = mapping
            self._byPort[port] = mapping
            self.log.debug(
                "{nat} mapped {internal} to {external}",
                nat=self,
                internal=mapping.internal,
                external=mapping.external,
            )
        mapping.lastUsed = at
        mapping.permissions.add(packet.dst)
        packet.src = mapping.external
        return True

    def _fromInside(self, at, packet):
        """
        Handle a datagram from the private network to outside it.
        """
        if packet.dst[0] == self.publicAddress:
            if not self.hairpinning:
                self.network._record(at, packet, HAIRPINNING_DISABLED, self)
            elif self._translateOutbound(at, packet):
                self._fromOutside(at, packet)
        elif self._translateOutbound(at, packet):
            self.network._cross(at, self, packet, self.network._route, self._realm)

    def _fromOutside(self, at, packet):
        """
        Handle a datagram to the public address.
        """
        self._expire(at)
        mapping = self._byPort.get(packet.dst[1])
        if mapping is None:
            self.network._record(at, packet, NO_MAPPING, self)
        elif not self._admits(mapping, packet.src):
            self.network._record(at, packet, FILTERED, self)
        else:
            packet.dst = mapping.internal
            self.network._route(at, packet, self._lan)
