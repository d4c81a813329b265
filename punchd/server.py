"""
The stage manager: a rendezvous server that keeps the phonebook and
introduces peers that ask for each other.
"""

import os
from collections import Counter, OrderedDict

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from punchd import messages, seedprotocol, stun, udpsend
from punchd.addresses import formatAddress, unmapped
from punchd.drops import DropCounter
from punchd.logs import hideAddresses

#: Seconds between the retransmissions of an unanswered introduction.
INTRODUCTION_RETRIES = (0.5, 1.0, 2.0, 4.0)


class _PendingIntroduction:
    __slots__ = ("name", "address", "datagram", "retries", "call")

    def __init__(self, name, address, datagram):
        self.name = name
        self.address = address
        self.datagram = datagram
        self.retries = iter(INTRODUCTION_RETRIES)
        self.call = None


class StageManagerProtocol(DatagramProtocol):
    """
    The stage manager.

    It answers every registration with the address it came from, keeps the
    phonebook, and the moment a peer seeks a peer that seeks it back, sends
    both of them an introduction at once: each other's public mapping and
    local addresses, and a fresh punch key.  It also answers plain STUN
    Binding requests from any STUN client.

    @ivar phonebook: The L{punchd.phonebook.Phonebook}.
    @ivar stats: Counters of what happened, by event name, and of the
        bytes the stage manager's port received and sent (C{bytesReceived},
        C{bytesSent}).
    @type stats: L{collections.Counter}
    @ivar drops: The L{DropCounter} of datagrams dropped, by reason.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock,
        phonebook,
        sweepInterval: float = 1.0,
        randomBytes=os.urandom,
        discovery=None,
        logAddresses: bool = True,
        seedCompat=None,
    ):
        """
        @param clock: The L{twisted.internet.interfaces.IReactorTime} that
            drives expiry and retransmission.
        @param phonebook: The L{punchd.phonebook.Phonebook} to keep.
        @param sweepInterval: Seconds between two sweeps for expired entries.
        @param randomBytes: A function of a length returning that many
            random bytes, for punch keys and transaction ids.
        @param discovery: The L{punchd.discovery.BehaviourDiscovery} that
            answers Binding requests, when the stage manager offers NAT
            behaviour discovery; L{None} for plain answers.
        @param logAddresses: Whether the log shows peers' addresses.
        @param seedCompat: The L{punchd.seedserver.OriginalClients} that
            answers datagrams that are not STUN, registrations of the
            original test-clients; L{None} to drop them.
        """
        self.clock = clock
        self.phonebook = phonebook
        self.stats = Counter()
        self.drops = DropCounter(clock)
        if not logAddresses:
            hideAddresses(self)
            hideAddresses(self.drops)
        self._randomBytes = randomBytes
        self.discovery = discovery
        self.seedCompat = seedCompat
        if seedCompat is not None and not logAddresses:
            hideAddresses(seedCompat)
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        self._sweepInterval = sweepInterval
        self._pending = OrderedDict()
        self._pendingTo = {}
        self._handlers = {
            (stun.BINDING, stun.REQUEST): self._binding,
            (messages.REGISTER, stun.REQUEST): self._register,
            (messages.UNREGISTER, stun.REQUEST): self._unregister,
            (messages.INTRODUCE, stun.SUCCESS): self._introductionAnswered,
        }

    def startProtocol(self):
        # Every address the stage manager writes to came from its socket.
        self._send = udpsend.sender(self.transport)
        host = self.transport.getHost()
        self.log.info(
            "Stage manager listening on {serverAddress}; the phonebook holds up to"
            " {maxEntries} peers, each for {ttl} s after its last registration",
            serverAddress=formatAddress((host.host, host.port)),
            maxEntries=self.phonebook.maxEntries,
            ttl=self.phonebook.ttl,
        )
        if self.discovery is not None:
            # Answers leave through write(), so that their bytes are counted.
            self.discovery.attach((0, 0), self)
            self.log.info(
                "NAT behaviour discovery (RFC 5780) on {addresses}",
                addresses=self.discovery.describe(),
            )
        if self.seedCompat is not None:
            self.seedCompat.attach(self.write, self.drops, self.stats, self._introduceOriginal)
            self.log.info(
                "Also answering the original test-clients' text registrations"
                " (--seed-compat), with at most {lines} phonebook lines each",
                lines=self.seedCompat.answerLines,
            )
        self._sweeper.start(self._sweepInterval, now=False)

    def stopProtocol(self):
        if self._sweeper.running:
            self._sweeper.stop()
        for txid in list(self._pending):
            self._forget(txid)

    def write(self, datagram: bytes, address) -> None:
        """
        Send a datagram from the stage manager's port, counting its bytes.

        @param datagram: The datagram.
        @param address: Where to: C{(host, port)}.
        """
        self.stats["bytesSent"] += len(datagram)
        self._send(datagram, address)

    def datagramReceived(self, datagram, address):
        self.stats["datagrams"] += 1
        self.stats["bytesReceived"] += len(datagram)
        if (
            datagram[:8] == messages.BARE_BINDING_REQUEST
            and len(datagram) == 20
            and self.discovery is None
        ):
            # Most STUN clients' Binding request, the header alone: its
            # answer needs only the transaction ID, so it is not decoded.
            self.write(messages.bareBindingAnswer(datagram[8:], unmapped(address)), address)
            self.stats["bindings"] += 1
            return
        if self.seedCompat is not None and seedprotocol.isText(datagram):
            self.seedCompat.datagramReceived(datagram, address)
            return
        try:
            message = stun.decode(datagram)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
            return
        handler = self._handlers.get((message.method, message.messageClass))
        if handler is None:
            self.drops.drop(
                "unexpected message",
                formatAddress(address),
                f"method {message.method:#05x} class {message.messageClass}",
            )
            return
        try:
            handler(message, address)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
        except messages.InvalidMessage as e:
            self.drops.drop("invalid", formatAddress(address), e.reason)
            if message.messageClass == stun.REQUEST:
                self.write(
                    messages.encodeError(
                        message.method, message.transactionID, e.code, e.reason
                    ),
                    address,
                )

    def _binding(self, message, address):
        if self.discovery is not None:
            self.discovery.answer((0, 0), message, address)
        else:
            self.write(messages.bindingAnswer(message, unmapped(address)), address)
        self.stats["bindings"] += 1

    def _register(self, message, address):
        registration = messages.parseRegistration(message)
        now = self.clock.seconds()
        entry, previous, evicted = self.phonebook.register(
            registration.name,
            address,
            registration.localAddresses,
            registration.wants,
            now,
        )
        self.stats["registrations"] += 1
        if evicted is not None:
            self.stats["evictions"] += 1
            self.log.info(
                "Phonebook full ({size} entries): forgot {evicted}, the least recently seen",
                size=len(self.phonebook),
                evicted=evicted.name,
            )
        self._logRegistration(entry, previous)
        if self.seedCompat is not None:
            self.seedCompat.nativeRegistered(entry, previous, registration.seeking)
        other = peerState = None
        if registration.seeking and registration.wants is not None:
            other = self.phonebook.lookup(registration.wants, now)
            if other is None:
                peerState = messages.PEER_ABSENT
            elif other.original:
                # An original client cannot say whom it wants: see
                # punchd.seedserver for why it is introduced all the same.
                peerState = messages.PEER_INTRODUCED
            elif other.wants != entry.name:
                peerState = messages.PEER_WANTS_ANOTHER
            else:
                peerState = messages.PEER_INTRODUCED
        self.write(
            messages.encodeRegistered(
                message.transactionID,
                unmapped(address),
                int(self.phonebook.ttl),
                peerState,
            ),
            address,
        )
        if peerState == messages.PEER_INTRODUCED and other.original:
            self._introduceOriginal(entry, other)
            self.seedCompat.introduced(entry, other)
        elif peerState == messages.PEER_INTRODUCED:
            self._introduce(entry, other)
        elif peerState is not None:
            self.log.info(
                "{name} is looking for {wants}, who is {why}: no introduction yet",
                name=entry.name,
                wants=registration.wants,
                why="not registered"
                if other is None
                else f"looking for {other.wants}",
            )

    def _logRegistration(self, entry, previous):
        if previous is not None and previous.samePlace(entry):
            # A refresh, the stage manager's most common datagram by far:
            # one per peer every interval.  Counted in stats, never logged,
            # not even at debug level, which twistd writes out: a line per
            # refresh cost more than the rest of the registration.
            return
        fields = dict(
            name=entry.name,
            address=formatAddress(entry.address),
            localAddresses=", ".join(map(formatAddress, entry.localAddresses)) or "none",
            wants=entry.wants,
        )
        if previous is None:
            self.log.info(
                "{name} registered from {address} (local: {localAddresses}), looking for {wants}",
                size=len(self.phonebook),
                **fields,
            )
        else:
            self.log.info(
                "{name} re-registered from {address} (local: {localAddresses}), looking for {wants};"
                " it was at {previousAddress} looking for {previousWants}",
                previousAddress=formatAddress(previous.address),
                previousWants=previous.wants,
                **fields,
            )

    def _introduce(self, a, b):
        key = self._randomBytes(messages.PUNCH_KEY_BYTES)
        for to, about in ((a, b), (b, a)):
            self._sendIntroduction(
                to,
                messages.Introduction(
                    about.name,
                    unmapped(about.address),
                    about.localAddresses,
                    key,
                ),
            )
        self.stats["introductions"] += 1
        self.log.info(
            "Introduced {a} at {aAddress} and {b} at {bAddress}",
            a=a.name,
            aAddress=formatAddress(a.address),
            b=b.name,
            bAddress=formatAddress(b.address),
        )

    def _introduceOriginal(self, native, original):
        self._sendIntroduction(
            native,
            messages.Introduction(
                original.name, unmapped(original.address), (), None, original=True
            ),
        )
        self.stats["introductions"] += 1
        self.log.info(
            "Introduced {a} at {aAddress} to {b} at {bAddress}, an original"
            " test-client, which speaks only the original's unauthenticated text",
            a=native.name,
            aAddress=formatAddress(native.address),
            b=original.name,
            bAddress=formatAddress(original.address),
        )

    def _sendIntroduction(self, to, introduction):
        # One introduction in flight per peer: a newer one replaces it.
        if to.name in self._pendingTo:
            self._forget(self._pendingTo[to.name])
        while len(self._pending) >= self.phonebook.maxEntries:
            self._forget(next(iter(self._pending)))
        txid = self._randomBytes(12)
        self._pending[txid] = _PendingIntroduction(
            to.name, to.address, messages.encodeIntroduction(txid, introduction)
        )
        self._pendingTo[to.name] = txid
        self._transmit(txid)

    def _transmit(self, txid):
        pending = self._pending[txid]
        delay = next(pending.retries, None)
        if delay is None:
            self._forget(txid)
            self.log.warn(
                "{name} at {address} never acknowledged its introduction",
                name=pending.name,
                address=formatAddress(pending.address),
            )
            return
        self.write(pending.datagram, pending.address)
        pending.call = self.clock.callLater(delay, self._transmit, txid)

    def _forget(self, txid):
        pending = self._pending.pop(txid)
        del self._pendingTo[pending.name]
        if pending.call is not None and pending.call.active():
            pending.call.cancel()

    def _introductionAnswered(self, message, address):
        pending = self._pending.get(message.transactionID)
        if pending is None or pending.address != address:
            self.drops.drop("unexpected message", formatAddress(address), "stale introduction answer")
            return
        self._forget(message.transactionID)

    def _unregister(self, message, address):
        name = messages.parseUnregister(message)
        entry = self.phonebook.lookup(name, self.clock.seconds())
        if entry is None or entry.address != address:
            raise messages.InvalidMessage(f"{name} is not registered from this address")
        self.phonebook.remove(name)
        self.stats["unregistrations"] += 1
        self.write(
            messages.encodeSuccess(messages.UNREGISTER, message.transactionID), address
        )
        self.log.info("{name} at {address} left", name=name, address=formatAddress(address))

    def _sweep(self):
        for entry in self.phonebook.expire(self.clock.seconds()):
            self.stats["expiries"] += 1
            self.log.info(
                "{name} at {address} expired: not heard from in {ttl} s",
                name=entry.name,
                address=formatAddress(entry.address),
                ttl=self.phonebook.ttl,
            )
