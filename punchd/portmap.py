"""
Port mapping: asking the router for an inbound mapping with PCP (RFC 6887)
or NAT-PMP (RFC 6886), keeping it, and deleting it.

A router that grants one forwards what comes to its public address and
the mapped port to our socket, from anyone: whatever its NAT does to our
own datagrams, the mapped address is one every contact can reach.

The codec (the C{encode*} and C{decode*} functions) is pure: no I/O and no
clock.  L{PortMapper} is the client: it takes a clock and a function that
sends, and is fed the datagrams that come from the router.

Order, as RFC 6887 section 9 advises a client that speaks both: PCP first.
A router that speaks only NAT-PMP answers a PCP request with a NAT-PMP
"unsupported version" (RFC 6886 section 3.5, result 1), and the client
moves to NAT-PMP at once; one that says nothing at all may be an older
NAT-PMP router that drops what it does not know, so NAT-PMP is tried too
once PCP's schedule runs out.

A renewal the router does not answer is tried again at half the time the
mapping has left (RFC 6887 section 11.2.1, RFC 6886 section 3.7), up to
L{RENEWAL_RETRIES} times, before the mapping is given up.  Every answer
carries the router's epoch, its seconds since it last lost its mappings; one
that does not advance as our clock does (RFC 6886 section 3.6, RFC 6887
section 8.5) means the router restarted, and an unsolicited announcement
that says so has the client ask for its mapping again at once.
"""

import secrets
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from itertools import islice

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from punchd.addresses import formatAddress
from punchd.transactions import Transactions, TransactionTimeout, backoff

#: The port routers listen on for both protocols.
SERVER_PORT = 5351

NATPMP_VERSION = 0
PCP_VERSION = 2

#: NAT-PMP opcodes (RFC 6886 section 3); an answer's is 128 more.
PMP_EXTERNAL_ADDRESS = 0
PMP_MAP_UDP = 1
#: PCP's ANNOUNCE and MAP opcodes (RFC 6887 sections 14.1 and 11); the
#: answer sets the R bit.
PCP_ANNOUNCE = 0
PCP_MAP = 1
_RESPONSE = 0x80

#: Result codes both protocols share the meaning of: 0 is success and 1
#: an unsupported version.
SUCCESS = 0
UNSUPPORTED_VERSION = 1

PMP_RESULTS = {
    0: "success",
    1: "unsupported version",
    2: "not authorized or refused",
    3: "network failure",
    4: "out of resources",
    5: "unsupported opcode",
}
PCP_RESULTS = {
    0: "SUCCESS",
    1: "UNSUPP_VERSION",
    2: "NOT_AUTHORIZED",
    3: "MALFORMED_REQUEST",
    4: "UNSUPP_OPCODE",
    5: "UNSUPP_OPTION",
    6: "MALFORMED_OPTION",
    7: "NETWORK_FAILURE",
    8: "NO_RESOURCES",
    9: "UNSUPP_PROTOCOL",
    10: "USER_EX_QUOTA",
    11: "CANNOT_PROVIDE_EXTERNAL",
    12: "ADDRESS_MISMATCH",
    13: "EXCESSIVE_REMOTE_PEERS",
}

UDP = 17
NONCE_BYTES = 12
#: A PCP MAP request or response: the 24-byte common header and the
#: 36-byte MAP opcode body.
PCP_MAP_BYTES = 60
_PCP_HEADER_BYTES = 24
#: RFC 6887 section 7: no PCP message is longer.
PCP_MAX_BYTES = 1100
#: The lifetime asked for, RFC 6886 section 3.3's recommendation.
DEFAULT_LIFETIME = 7200

#: The schedules, as L{Transactions} takes them.  PCP's (RFC 6887 section
#: 8.1.1): 3 s, then doubling, each moved by up to 10% either way; the RFC
#: retransmits without end, this client twice before NAT-PMP.  NAT-PMP's
#: (RFC 6886 section 3.1): 250 ms, then doubling; the RFC's nine attempts
#: take 64 s, this client makes five, 7.75 s in all.
PMP_SCHEDULE = (0.25, 0.5, 1.0, 2.0, 4.0)
PCP_ATTEMPTS = 2
#: How many times an unanswered renewal is tried again, each at half the
#: time the mapping has left, before the mapping is given up: with the
#: default lifetime, at about 75%, 88% and 94% of it.
RENEWAL_RETRIES = 3


def pcpSchedule(random):
    """
    PCP's bounded schedule: L{PCP_ATTEMPTS} transmissions.

    @param random: A function returning a float in [0, 1), for the jitter.
    """
    return tuple(islice(backoff(3.0, 1024.0, 0.1, random), PCP_ATTEMPTS))


def defaultGateway(routeTable: str) -> "str | None":
    """
    The gateway of the IPv4 default route in Linux's C{/proc/net/route}.

    @param routeTable: The file's text: a header line, then one route a
        line, whose Destination, Gateway and Flags are the second, third
        and fourth columns, addresses in little-endian hexadecimal.
    @return: The gateway's address, or L{None} if there is no default
        route through a gateway.
    """
    for line in routeTable.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            destination, gateway, flags = (int(f, 16) for f in fields[1:4])
        except ValueError:
            continue
        # RTF_UP and RTF_GATEWAY.
        if destination == 0 and flags & 0x3 == 0x3 and gateway:
            return str(IPv4Address(struct.pack("<I", gateway)))
    return None


def routerRestarted(protocol, previous, current) -> bool:
    """
    Whether a router's epoch shows that it lost its mappings between two
    of its answers.

    @param protocol: L{NATPMP} or L{PCP}, whose rule applies: NAT-PMP's
        (RFC 6886 section 3.6) that the epoch advance at least 7/8 as fast
        as our clock, less 2 s; PCP's (RFC 6887 section 8.5) that it not go
        back more than 1 s and that the two clocks agree within 2 s and
        1/16 of the time passed.
    @param previous: C{(our time, the router's epoch)} at the earlier answer.
    @param current: The same at this answer.
    """
    clientDelta = current[0] - previous[0]
    serverDelta = current[1] - previous[1]
    if protocol == NATPMP:
        return serverDelta < clientDelta * 7 / 8 - 2
    return (
        serverDelta < -1
        or clientDelta + 2 < serverDelta - serverDelta / 16
        or serverDelta + 2 < clientDelta - clientDelta / 16
    )


class PortMapError(ValueError):
    """
    A datagram that is not a well-formed answer: the reason is the message.
    """


@dataclass(frozen=True)
class PMPAddress:
    """
    A NAT-PMP answer to the external address request.

    @ivar result: The result code (L{PMP_RESULTS}).
    @ivar epoch: The router's seconds since its mappings were reset.
    @ivar address: The router's external IPv4 address, as text.
    """

    result: int
    epoch: int
    address: str


@dataclass(frozen=True)
class PMPMapping:
    """
    A NAT-PMP answer to a UDP mapping request.

    @ivar result: The result code (L{PMP_RESULTS}).
    @ivar epoch: The router's seconds since its mappings were reset.
    @ivar internalPort: Our port, as the request named it.
    @ivar externalPort: The mapped port on the router's external address.
    @ivar lifetime: Seconds the mapping lasts.
    """

    result: int
    epoch: int
    internalPort: int
    externalPort: int
    lifetime: int


@dataclass(frozen=True)
class PMPError:
    """
    A short NAT-PMP error answer, which carries only its result: what a
    NAT-PMP router says to a PCP request (RFC 6886 section 3.5).

    @ivar opcode: The opcode of the request it answers.
    @ivar result: The result code (L{PMP_RESULTS}).
    """

    opcode: int
    result: int


@dataclass(frozen=True)
class PCPAnnounce:
    """
    A PCP ANNOUNCE answer (RFC 6887 section 14.1): a router that restarted
    may send one unasked, to say its mappings are gone.

    @ivar result: The result code (L{PCP_RESULTS}).
    @ivar epoch: The router's epoch time.
    """

    result: int
    epoch: int


@dataclass(frozen=True)
class PCPMapping:
    """
    A PCP answer to a MAP request.

    @ivar result: The result code (L{PCP_RESULTS}).
    @ivar lifetime: Seconds the mapping lasts, or on an error how long the
        error is likely to last.
    @ivar epoch: The router's epoch time.
    @ivar nonce: The request's mapping nonce, or L{None} in an error answer
        too short to carry the MAP body.
    @ivar protocol: The IANA protocol number, 17 for UDP.
    @ivar internalPort: Our port.
    @ivar externalPort: The assigned external port.
    @ivar externalAddress: The assigned external address, as text (an
        IPv4 one without its IPv4-mapped form).
    """

    result: int
    lifetime: int
    epoch: int
    nonce: "bytes | None" = None
    protocol: int = 0
    internalPort: int = 0
    externalPort: int = 0
    externalAddress: str = ""


def _address16(host: str) -> bytes:
    """
    An address in PCP's 16 bytes: IPv6, or IPv4 in its IPv4-mapped form.
    """
    address = ip_address(host)
    if isinstance(address, IPv4Address):
        return b"\x00" * 10 + b"\xff\xff" + address.packed
    return address.packed


def _host16(data: bytes) -> str:
    address = IPv6Address(data)
    mapped = address.ipv4_mapped
    return str(address if mapped is None else mapped)


def encodePMPAddressRequest() -> bytes:
    """
    The NAT-PMP external address request (RFC 6886 section 3.2): version
    and opcode, 2 bytes.
    """
    return struct.pack("!BB", NATPMP_VERSION, PMP_EXTERNAL_ADDRESS)


def encodePMPMapRequest(internalPort: int, externalPort: int, lifetime: int) -> bytes:
    """
    A NAT-PMP UDP mapping request (RFC 6886 section 3.3), 12 bytes: version,
    opcode 1, 2 reserved bytes, the internal port, the suggested external
    port and the requested lifetime in seconds.  A lifetime of 0 with an
    external port of 0 deletes the mapping (section 3.4).
    """
    return struct.pack(
        "!BBHHHI", NATPMP_VERSION, PMP_MAP_UDP, 0, internalPort, externalPort, lifetime
    )


def encodePCPMapRequest(
    clientHost: str,
    nonce: bytes,
    internalPort: int,
    lifetime: int,
    externalPort: int = 0,
    externalHost: str = "0.0.0.0",
) -> bytes:
    """
    A PCP MAP request for UDP (RFC 6887 sections 7.1 and 11.1), 60 bytes.

    Header: version 2, R bit 0 and opcode 1, 2 reserved bytes, the requested
    lifetime (4 bytes) and the client's address (16).  MAP body: the
    mapping nonce (12), protocol 17, 3 reserved bytes, the internal port,
    the suggested external port and the suggested external address (16;
    C{::ffff:0.0.0.0} for none).  A lifetime of 0 deletes the mapping.

    @param clientHost: Our address, as the router sees it.
    @param nonce: L{NONCE_BYTES} random bytes, the same for a mapping's
        life.
    """
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"a nonce of {NONCE_BYTES} bytes, not {len(nonce)}")
    return (
        struct.pack("!BBHI", PCP_VERSION, PCP_MAP, 0, lifetime)
        + _address16(clientHost)
        + nonce
        + struct.pack("!B3xHH", UDP, internalPort, externalPort)
        + _address16(externalHost)
    )


def decode(datagram: bytes):
    """
    Read an answer from the router, of either protocol.

    @return: A L{PMPAddress}, L{PMPMapping}, L{PMPError}, L{PCPMapping} or
        L{PCPAnnounce}.
    @raise PortMapError: If it is not a well-formed answer to one of the
        requests this client sends.
    """
    if len(datagram) < 2:
        raise PortMapError(f"{len(datagram)} byte(s)")
    version, opcode = datagram[0], datagram[1]
    if version == NATPMP_VERSION:
        return _decodePMP(datagram, opcode)
    if version == PCP_VERSION:
        return _decodePCP(datagram, opcode)
    raise PortMapError(f"version {version}")


def _decodePMP(datagram, opcode):
    if opcode not in (_RESPONSE | PMP_EXTERNAL_ADDRESS, _RESPONSE | PMP_MAP_UDP, _RESPONSE | PCP_MAP):
        raise PortMapError(f"NAT-PMP opcode {opcode}")
    if len(datagram) < 8:
        raise PortMapError(f"a NAT-PMP answer of {len(datagram)} bytes")
    result, epoch = struct.unpack_from("!HI", datagram, 2)
    request = opcode & ~_RESPONSE
    full = 12 if request == PMP_EXTERNAL_ADDRESS else 16
    if len(datagram) != full:
        if result == SUCCESS or len(datagram) != 8:
            raise PortMapError(f"a NAT-PMP answer to opcode {request} of {len(datagram)} bytes")
        return PMPError(request, result)
    if request == PMP_EXTERNAL_ADDRESS:
        return PMPAddress(result, epoch, str(IPv4Address(datagram[8:12])))
    internal, external, lifetime = struct.unpack_from("!HHI", datagram, 8)
    return PMPMapping(result, epoch, internal, external, lifetime)


def _decodePCP(datagram, opcode):
    size = len(datagram)
    if size < _PCP_HEADER_BYTES or size > PCP_MAX_BYTES or size % 4:
        raise PortMapError(f"a PCP message of {size} bytes")
    result = datagram[3]
    lifetime, epoch = struct.unpack_from("!II", datagram, 4)
    if opcode == _RESPONSE | PCP_ANNOUNCE:
        return PCPAnnounce(result, epoch)
    if opcode != _RESPONSE | PCP_MAP:
        raise PortMapError(f"PCP opcode {opcode:#04x}, not a MAP or ANNOUNCE answer")
    if size < PCP_MAP_BYTES:
        if result == SUCCESS:
            raise PortMapError(f"a successful PCP MAP answer of {size} bytes")
        return PCPMapping(result, lifetime, epoch)
    nonce = datagram[24:36]
    protocol, internal, external = struct.unpack_from("!B3xHH", datagram, 36)
    # What follows the MAP body is options, which this client never asks
    # for and does not read.
    return PCPMapping(
        result, lifetime, epoch, nonce, protocol, internal, external, _host16(datagram[44:60])
    )


@dataclass(frozen=True)
class Mapping:
    """
    A mapping the router granted.

    @ivar external: The C{(host, port)} on the router's external side that
        it forwards to our port.
    @ivar lifetime: Seconds it lasts from when it was granted.
    @ivar protocol: C{"PCP"} or C{"NAT-PMP"}.
    """

    external: tuple
    lifetime: int
    protocol: str


PCP = "PCP"
NATPMP = "NAT-PMP"


class PortMapper:
    """
    Keeps a port mapping on the router for one socket: asks for one at
    L{start}, renews it at half its lifetime (retrying a renewal that is
    not answered, L{RENEWAL_RETRIES} times), asks again when the router's
    epoch shows it restarted, and deletes it at L{stop}.

    Every datagram from the router goes to L{handle}.  Answers that do not
    match what is in flight (wrong source port, size, version, opcode,
    nonce or internal port) are dropped and counted, and never answered.

    @ivar mapping: The L{Mapping} held, or L{None}.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        send,
        gateway: str,
        clientHost: str,
        internalPort: int,
        changed,
        drops,
        lifetime: int = DEFAULT_LIFETIME,
        randbytes=secrets.token_bytes,
        random=None,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends from
            the socket to be mapped.
        @param gateway: The router's address: the default route's gateway.
        @param clientHost: Our address on the router's network, for PCP.
        @param internalPort: The socket's port.
        @param changed: Called with the new L{Mapping} when one is granted
            or moves, and with L{None} when it is lost.
        @param drops: A L{punchd.drops.DropCounter} for what is dropped.
        @param lifetime: The lifetime to ask for, in seconds.
        @param randbytes: A function of a number that returns that many
            random bytes, for PCP's nonce.
        @param random: A function returning a float in [0, 1), for PCP's
            jitter; by default the system's.
        """
        self.clock = clock
        self.gateway = gateway
        self._clientHost = clientHost
        self._internalPort = internalPort
        self._changed = changed
        self._drops = drops
        self._lifetime = lifetime
        self._nonce = randbytes(NONCE_BYTES)
        self._random = secrets.SystemRandom().random if random is None else random
        self._requests = Transactions(clock, send)
        self._send = send
        self._renewal = None
        self._retries = 0
        self._expires = None
        self._epoch = None
        self._externalHost = None
        self.mapping = None

    @property
    def _router(self):
        return (self.gateway, SERVER_PORT)

    def start(self):
        """
        Ask for a mapping: PCP first, then NAT-PMP.
        """
        self._askPCP()

    def stop(self):
        """
        Delete the mapping held, in one datagram (a lost one only means
        it expires), and leave no timer.
        """
        self._requests.withdrawAll()
        self._cancelRenewal()
        mapping = self.mapping
        if mapping is None:
            return
        self.mapping = None
        if mapping.protocol == PCP:
            self._send(self._pcpRequest(0, mapping.external), self._router)
        else:
            self._send(encodePMPMapRequest(self._internalPort, 0, 0), self._router)
        self.log.info(
            "Port mapping: asked the router at {gateway} to delete {external} ({protocol})",
            gateway=self.gateway,
            external=formatAddress(mapping.external),
            protocol=mapping.protocol,
        )

    def _cancelRenewal(self):
        if self._renewal is not None and self._renewal.active():
            self._renewal.cancel()
        self._renewal = None

    def _pcpRequest(self, lifetime, external=None):
        host, port = external if external is not None else ("0.0.0.0", 0)
        return encodePCPMapRequest(
            self._clientHost, self._nonce, self._internalPort, lifetime, port, host
        )

    # Asking

    def _askPCP(self):
        suggested = None if self.mapping is None else self.mapping.external
        d = self._requests.request(
            PCP, self._pcpRequest(self._lifetime, suggested), self._router,
            pcpSchedule(self._random),
        )
        d.addCallbacks(self._pcpAnswered, self._notAnswered, errbackArgs=(PCP,))

    def _askPMP(self):
        d = self._requests.request(
            PMP_EXTERNAL_ADDRESS, encodePMPAddressRequest(), self._router, PMP_SCHEDULE
        )
        d.addCallbacks(self._pmpAddress, self._notAnswered, errbackArgs=(NATPMP,))

    def _askPMPMapping(self):
        external = 0 if self.mapping is None else self.mapping.external[1]
        d = self._requests.request(
            PMP_MAP_UDP,
            encodePMPMapRequest(self._internalPort, external, self._lifetime),
            self._router,
            PMP_SCHEDULE,
        )
        d.addCallbacks(self._pmpMapped, self._notAnswered, errbackArgs=(NATPMP,))

    def _notAnswered(self, failure, protocol):
        failure.trap(TransactionTimeout, CancelledError)
        if failure.check(CancelledError):
            return
        mapping = self.mapping
        if mapping is None:
            if protocol == PCP:
                self._askPMP()
            else:
                self._lost("did not answer NAT-PMP or PCP")
            return
        left = self._expires - self.clock.seconds()
        if self._retries < RENEWAL_RETRIES and left > 0:
            self._retries += 1
            self.log.info(
                "Port mapping: the router at {gateway} did not answer the renewal of"
                " {external} ({protocol}); trying again in {delay:.0f} s, {left:.0f} s"
                " before it expires",
                gateway=self.gateway,
                external=formatAddress(mapping.external),
                protocol=mapping.protocol,
                delay=left / 2,
                left=left,
            )
            self._renewal = self.clock.callLater(left / 2, self._renew)
            return
        self._lost(
            f"did not answer the renewal of {formatAddress(mapping.external)}"
            f" over {mapping.protocol}: the mapping is lost"
        )

    def _lost(self, why):
        lost = self.mapping is not None
        self.mapping = None
        self._cancelRenewal()
        self.log.info("No port mapping: the router at {gateway} {why}", gateway=self.gateway, why=why)
        if lost:
            self._changed(None)

    # Answers

    def handle(self, datagram: bytes, address) -> bool:
        """
        Take a datagram if it came from the router's port-mapping port.

        @return: Whether it was the router's (used or dropped here).
        """
        if tuple(address[:2]) != self._router:
            return False
        source = formatAddress(address)
        try:
            answer = decode(datagram)
        except PortMapError as e:
            self._drops.drop("malformed port mapping answer", source, str(e))
            return True
        key = self._keyOf(answer)
        if key not in self._requests and self._announced(answer):
            return True
        if key not in self._requests:
            self._drops.drop(
                "unexpected port mapping answer", source, f"{type(answer).__name__}, not asked for"
            )
            return True
        if isinstance(answer, PCPMapping) and answer.nonce is not None and (
            answer.nonce != self._nonce
            or answer.protocol != UDP
            or answer.internalPort != self._internalPort
        ):
            self._drops.drop(
                "unmatched port mapping answer", source,
                "nonce, protocol or internal port not ours",
            )
            return True
        if key == PMP_MAP_UDP and isinstance(answer, PMPMapping) and (
            answer.internalPort != self._internalPort
        ):
            self._drops.drop(
                "unmatched port mapping answer", source,
                f"internal port {answer.internalPort}, not ours",
            )
            return True
        self._requests.answer(key, answer)
        return True

    def _announced(self, answer) -> bool:
        """
        Take an unasked answer that announces the router's epoch (a PCP
        ANNOUNCE, or NAT-PMP's external address, which a router sends when
        it restarts): if it shows the router lost our mapping, ask again
        at once.  With a request in flight, whose answer will tell, or with
        no epoch yet to compare with, it is only dropped.

        @return: Whether it was taken.
        """
        if self.mapping is None or len(self._requests) or self._epoch is None:
            return False
        protocol = self.mapping.protocol
        if not isinstance(answer, {PCP: PCPAnnounce, NATPMP: PMPAddress}[protocol]):
            return False
        if answer.result != SUCCESS or not self._epochSeen(protocol, answer.epoch):
            return False
        self._cancelRenewal()
        self._renew()
        return True

    def _epochSeen(self, protocol, epoch) -> bool:
        """
        Note the router's epoch in an answer.

        @return: Whether it shows the router restarted since its previous
            answer; if so, the log says so.
        """
        now = (self.clock.seconds(), epoch)
        previous, self._epoch = self._epoch, now
        if previous is None or not routerRestarted(protocol, previous, now):
            return False
        self.log.info(
            "Port mapping: the router at {gateway} restarted and lost its mappings"
            " (epoch {epoch} s, {previous} s {elapsed:.0f} s ago)",
            gateway=self.gateway,
            epoch=epoch,
            previous=previous[1],
            elapsed=now[0] - previous[0],
        )
        return True

    def _keyOf(self, answer):
        """
        The request an answer is for.
        """
        if isinstance(answer, PCPMapping):
            return PCP
        if isinstance(answer, PCPAnnounce):
            # Never asked for: not the key of any request (PCP_ANNOUNCE is
            # NAT-PMP's external address opcode too).
            return PCPAnnounce
        if answer.result == UNSUPPORTED_VERSION and PCP in self._requests:
            # A NAT-PMP router's word on our PCP request, short (as RFC
            # 6886 section 3.5 has it) or of a mapping answer's size.
            return PCP
        if isinstance(answer, PMPAddress) or (
            isinstance(answer, PMPError) and answer.opcode == PMP_EXTERNAL_ADDRESS
        ):
            return PMP_EXTERNAL_ADDRESS
        return PMP_MAP_UDP

    def _pcpAnswered(self, answer):
        if not isinstance(answer, PCPMapping):
            # A NAT-PMP router, as RFC 6887 section 9 expects.
            self._askPMP()
            return
        self._epochSeen(PCP, answer.epoch)
        if answer.result != SUCCESS:
            self._refused(PCP, PCP_RESULTS.get(answer.result, f"result {answer.result}"))
            return
        self._granted(Mapping((answer.externalAddress, answer.externalPort), answer.lifetime, PCP))

    def _pmpAddress(self, answer):
        if isinstance(answer, PMPAddress):
            self._epochSeen(NATPMP, answer.epoch)
        if answer.result != SUCCESS:
            self._refused(NATPMP, PMP_RESULTS.get(answer.result, f"result {answer.result}"))
            return
        self._externalHost = answer.address
        self._askPMPMapping()

    def _pmpMapped(self, answer):
        if isinstance(answer, PMPError) or answer.result != SUCCESS:
            self._refused(NATPMP, PMP_RESULTS.get(answer.result, f"result {answer.result}"))
            return
        self._epochSeen(NATPMP, answer.epoch)
        self._granted(
            Mapping((self._externalHost, answer.externalPort), answer.lifetime, NATPMP)
        )

    def _refused(self, protocol, why):
        self._lost(f"refused the mapping over {protocol}: {why}")

    def _granted(self, mapping):
        if mapping.lifetime == 0 or mapping.external[1] == 0:
            self._lost(f"granted no usable mapping over {mapping.protocol}")
            return
        previous = self.mapping
        self.mapping = mapping
        self._retries = 0
        self._expires = self.clock.seconds() + mapping.lifetime
        self._cancelRenewal()
        # RFC 6886 section 3.3 and RFC 6887 section 11.2.1: renew from
        # half the lifetime on.
        self._renewal = self.clock.callLater(mapping.lifetime / 2, self._renew)
        if previous is not None and previous.external == mapping.external:
            self.log.debug(
                "Port mapping: renewed {external} for {lifetime} s ({protocol})",
                external=formatAddress(mapping.external),
                lifetime=mapping.lifetime,
                protocol=mapping.protocol,
            )
            return
        self.log.info(
            "Port mapping: the router at {gateway} maps {external} to our port {port}"
            " for {lifetime} s ({protocol})",
            gateway=self.gateway,
            external=formatAddress(mapping.external),
            port=self._internalPort,
            lifetime=mapping.lifetime,
            protocol=mapping.protocol,
        )
        self._changed(mapping)

    def _renew(self):
        self._renewal = None
        if self.mapping.protocol == PCP:
            self._askPCP()
        else:
            self._askPMP()
