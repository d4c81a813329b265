"""
The simulated public internet: L{Network} adds hosts and NATs, carries each
datagram over the links it crosses, with their latency and loss, on its
clock, and records what became of it in L{Network.traffic}.
"""

import math
import random

from twisted.internet import task
from twisted.internet.abstract import isIPAddress
from twisted.logger import Logger

from punchd.testing.hosts import Host
from punchd.testing.nat import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    NAT,
    PRESERVING,
    RANDOM,
    SEQUENTIAL,
)
from punchd.testing.realms import Realm
from punchd.testing.traffic import DELIVERED, LOST, NO_ROUTE, SENDER_CLOSED, Datagram

__all__ = ["Network"]

_BEHAVIOURS = (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT)

_ALLOCATIONS = (PRESERVING, SEQUENTIAL, RANDOM)


def _checkLink(latency, loss):
    if latency < 0:
        raise ValueError(f"latency must not be negative, not {latency!r}")
    if not 0 <= loss <= 1:
        raise ValueError(f"loss is a probability from 0 to 1, not {loss!r}")


class _Packet:
    """
    A datagram on its way, with its addresses as they are now.
    """

    __slots__ = ("sender", "source", "destination", "data", "sentAt", "src", "dst")

    def __init__(self, sender, source, destination, data, sentAt):
        self.sender = sender
        self.source = source
        self.destination = destination
        self.data = data
        self.sentAt = sentAt
        self.src = source
        self.dst = destination


class Network:
    """
    The public internet, driven by a clock.

    @ivar clock: The L{task.Clock} everything runs on.
    @ivar latency: The one-way latency, in seconds, of the link of a new
        host or NAT that does not set its own.
    @ivar loss: The probability, from 0 to 1, that such a link drops a
        datagram.
    @ivar random: The L{random.Random} that decides losses (drawing once
        per lossy link crossed; a link without loss draws nothing) and
        random port allocations.
    @ivar traffic: A L{Datagram} for every datagram delivered or dropped, in
        the order that happened.
    @type traffic: L{list}
    """

    log = Logger()

    def __init__(
        self,
        clock: "task.Clock | None" = None,
        latency: float = 0.0,
        loss: float = 0.0,
        seed: int = 0,
    ):
        """
        @param clock: The clock to run on; by default a new one.
        @param latency: The default one-way latency of a link, in seconds.
        @param loss: The default probability that a link drops a datagram.
        @param seed: The seed of L{random}.
        @raise ValueError: If C{latency} is negative or C{loss} is not a
            probability.
        """
        _checkLink(latency, loss)
        self.clock = task.Clock() if clock is None else clock
        self.latency = latency
        self.loss = loss
        self.random = random.Random(seed)
        self.traffic = []
        self._public = Realm(None)
        self._inFlight = set()

    def host(
        self,
        address: str,
        behind: "NAT | None" = None,
        latency: "float | None" = None,
        loss: "float | None" = None,
    ) -> "Host":
        """
        Add a machine.

        @param address: Its IPv4 address, unique in its realm.
        @param behind: The L{NAT} whose private network it is on, or L{None}
            for the public internet.
        @param latency: The one-way latency of its link; by default the
            network's.
        @param loss: The probability that its link drops a datagram; by
            default the network's.
        @return: The new L{Host}.
        @raise ValueError: If the address is not IPv4 or already taken, or
            the link settings are out of range.
        """
        latency = self.latency if latency is None else latency
        loss = self.loss if loss is None else loss
        _checkLink(latency, loss)
        realm = self._realmBehind(behind)
        host = Host(self, address, behind, latency, loss, realm)
        realm.attach(address, host)
        return host

    def nat(
        self,
        publicAddress: str,
        mapping: str = ENDPOINT_INDEPENDENT,
        filtering: str = ADDRESS_AND_PORT_DEPENDENT,
        allocation: str = PRESERVING,
        mappingTimeout: "float | None" = None,
        hairpinning: bool = False,
        latency: "float | None" = None,
        loss: "float | None" = None,
        behind: "NAT | None" = None,
    ) -> "NAT":
        """
        Add a NAT, with a private network of its own behind it.

        Outbound, a datagram from behind the NAT to an address outside its
        private network uses the mapping for its source and, depending on
        C{mapping}, its destination, making a new one if there is none; the
        mapping remembers the destination as a permission, and the
        datagram leaves from the mapping's public address and port.

        Inbound, a datagram to the public address is dropped unless a
        mapping has its port and, depending on C{filtering}, holds a
        permission for its source; if it gets in, it goes on to the
        mapping's internal address and port, its source unchanged.

        @param publicAddress: Its IPv4 address in the realm it is on.
        @param mapping: When a datagram from one internal address and port
            gets a mapping of its own: L{ENDPOINT_INDEPENDENT} (never: one
            for all destinations), L{ADDRESS_DEPENDENT} (for each destination
            address) or L{ADDRESS_AND_PORT_DEPENDENT} (for each destination
            address and port).
        @param filtering: Who may send in through a mapping:
            L{ENDPOINT_INDEPENDENT} (anyone), L{ADDRESS_DEPENDENT} (the
            addresses it has sent to, from any port) or
            L{ADDRESS_AND_PORT_DEPENDENT} (the addresses and ports it has
            sent to).
        @param allocation: How a new mapping's public port is chosen:
            L{PRESERVING}, L{SEQUENTIAL} or L{RANDOM}.
        @param mappingTimeout: Seconds after the last outbound datagram
            through a mapping that the mapping, and its permissions, expire;
            inbound datagrams do not refresh it.  L{None} for never.  A
            datagram reaching the NAT at exactly the expiry time finds the
            mapping gone.
        @param hairpinning: Whether a datagram from behind the NAT to its
            own public address is translated like an outbound datagram and
            then filtered like an inbound one (RFC 4787 section 6), rather
            than dropped.
        @param latency: The one-way latency of its link, its public side;
            by default the network's.
        @param loss: The probability that its link drops a datagram; by
            default the network's.
        @param behind: The L{NAT} whose private network this one is on, for
            a NAT behind a NAT (carrier-grade NAT); L{None} for the public
            internet.
        @return: The new L{NAT}.
        @raise ValueError: If an argument is not one of the documented
            values, or the address is taken.
        """
        if mapping not in _BEHAVIOURS:
            raise ValueError(f"unknown mapping behaviour {mapping!r}")
        if filtering not in _BEHAVIOURS:
            raise ValueError(f"unknown filtering behaviour {filtering!r}")
        if allocation not in _ALLOCATIONS:
            raise ValueError(f"unknown port allocation {allocation!r}")
        if mappingTimeout is not None and mappingTimeout <= 0:
            raise ValueError(
                f"mappingTimeout must be positive or None, not {mappingTimeout!r}"
            )
        latency = self.latency if latency is None else latency
        loss = self.loss if loss is None else loss
        _checkLink(latency, loss)
        realm = self._realmBehind(behind)
        nat = NAT(
            self,
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
        )
        realm.attach(publicAddress, nat)
        return nat

    def delivered(self):
        """
        The datagrams delivered so far.

        @return: The L{Datagram}s of L{traffic} that were delivered.
        @rtype: L{list}
        """
        return [d for d in self.traffic if d.outcome == DELIVERED]

    def dropped(self, reason: "str | None" = None):
        """
        The datagrams dropped so far.

        @param reason: Only those dropped for this reason, such as
            L{FILTERED}; by default all.
        @return: L{Datagram}s of L{traffic}.
        @rtype: L{list}
        """
        return [
            d
            for d in self.traffic
            if d.outcome != DELIVERED and reason in (None, d.outcome)
        ]

    def inFlight(self) -> int:
        """
        @return: How many datagrams are on their way.
        """
        return len(self._inFlight)

    def advance(self, seconds: float) -> None:
        """
        Advance the clock by C{seconds}, stopping at the time of every call
        that falls due on the way, so that each runs at its own time.

        L{task.Clock.advance} runs every call that falls due in the time it
        skips with the clock already at the end of it; so a reply written
        from C{datagramReceived} would leave late, and a C{LoopingCall}
        would skip beats.  This does not.

        @param seconds: How far to advance.
        """
        end = self.clock.seconds() + seconds
        while True:
            due = self._nextDue()
            if due is None or due > end:
                break
            self._advanceTo(due)
        self._advanceTo(end)

    def flush(self, maxSteps: int = 10000) -> None:
        """
        Advance the clock, as L{advance} does, until no datagram is on its
        way, running whatever else falls due on the way.

        @param maxSteps: How many calls due at different times to run at
            most, so that protocols that answer each other forever over
            links with latency cannot hang a test.  (Over links without
            any, C{Clock.advance} itself never returns.)
        @raise RuntimeError: If datagrams are still on their way after
            C{maxSteps} steps.
        """
        for _ in range(maxSteps):
            if not self._inFlight:
                return
            self._advanceTo(self._nextDue())
        if self._inFlight:
            raise RuntimeError(
                f"{len(self._inFlight)} datagrams still in flight after"
                f" {maxSteps} steps"
            )

    def _nextDue(self):
        calls = self.clock.getDelayedCalls()
        return min((call.getTime() for call in calls), default=None)

    def _advanceTo(self, when):
        now = self.clock.seconds()
        amount = max(0.0, when - now)
        # Floating point: make sure the clock gets at least to when.
        while now + amount < when:
            amount = math.nextafter(amount, math.inf)
        self.clock.advance(amount)

    def _realmBehind(self, nat):
        if nat is None:
            return self._public
        if nat.network is not self:
            raise ValueError(f"{nat} is on another network")
        return nat._lan

    def _send(self, port, data, destination):
        """
        Start a datagram from C{port} on its way.
        """
        sender = port.host
        now = self.clock.seconds()
        packet = _Packet(sender, (sender.address, port.port), destination, data, now)
        if port._closed:
            self._record(now, packet, SENDER_CLOSED, sender)
        elif not isIPAddress(destination[0]):
            # An IPv6 destination: this is an IPv4 world.
            self._record(now, packet, NO_ROUTE, None)
        elif destination[0] == sender.address:
            self._schedule(now, 0.0, sender._receive, packet)
        else:
            self._cross(now, sender, packet, self._route, sender._realm)

    def _schedule(self, at, latency, then, *args):
        """
        Call C{then(at + latency, *args)} when the clock gets to that time.

        Time is kept exactly, apart from the clock: inside L{task.Clock.advance}
        the clock reads the end of the advance, not the time of the hop.
        """
        arrival = at + latency
        delay = latency + (at - self.clock.seconds())

        def arrive():
            self._inFlight.discard(call)
            then(arrival, *args)

        call = self.clock.callLater(delay, arrive)
        self._inFlight.add(call)

    def _cross(self, at, node, packet, then, *args):
        """
        Carry C{packet} over the link of C{node}, then call
        C{then(arrival, packet, *args)}, unless the link loses it.
        """
        if node.loss and self.random.random() < node.loss:
            self._record(at, packet, LOST, node)
        else:
            self._schedule(at, node.latency, then, packet, *args)

    def _route(self, at, packet, realm):
        """
        Take C{packet} on from the heart of C{realm}.
        """
        node = realm.nodes.get(packet.dst[0])
        if isinstance(node, Host):
            self._cross(at, node, packet, node._receive)
        elif isinstance(node, NAT):
            self._cross(at, node, packet, node._fromOutside)
        elif realm.gateway is not None:
            realm.gateway._fromInside(at, packet)
        else:
            self._record(at, packet, NO_ROUTE, None)

    def _record(self, at, packet, outcome, where, deliveredTo=None):
        datagram = Datagram(
            sentAt=packet.sentAt,
            time=at,
            sender=packet.sender,
            source=packet.source,
            destination=packet.destination,
            data=packet.data,
            outcome=outcome,
            where=where,
            receivedFrom=packet.src if deliveredTo is not None else None,
            deliveredTo=deliveredTo,
        )
        self.traffic.append(datagram)
        self.log.debug(
            "{source} -> {destination} at {time}: {outcome} ({where})",
            source=datagram.source,
            destination=datagram.destination,
            time=at,
            outcome=outcome,
            where=where,
        )
        return datagram
