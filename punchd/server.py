"""
The stage manager: a rendezvous server that keeps the phonebook and
introduces peers that ask for each other.
"""

import dataclasses
import hmac
import os
from collections import Counter
from functools import partial
from hashlib import blake2s

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd import messages, stun, udpsend
from punchd.addresses import formatAddress, unmapped, unusableReason
from punchd.cookies import Cookies
from punchd.drops import DropCounter
from punchd.interfaces import IStageManager
from punchd.logs import hideAddresses
from punchd.phonebook import PhonebookFull, SourceQuotaReached
from punchd.ratelimit import SourceLimiter, TokenBucket
from punchd.transactions import Transactions, TransactionTimeout

#: Seconds between the retransmissions of an unanswered introduction.
INTRODUCTION_RETRIES = (0.5, 1.0, 2.0, 4.0)

#: Registrations, or Binding requests, a second from one source (address
#: and port), by default.
SOURCE_RATE = 20


#: Log lines about peers (registrations, introductions, departures,
#: expiries) a second, and at once: anyone with addresses to register from
#: can cause them, so past that they are counted, and the count logged.
PEER_LOG_RATE = 20.0
PEER_LOG_BURST = 200.0

#: Seconds between two lines saying how many peer events went unlogged.
UNLOGGED_NOTE_INTERVAL = 10.0


def sourceLimiter(rate: float) -> "SourceLimiter | None":
    """
    A per-source limiter of C{rate} a second, with an overall limit of a
    thousand times that, or L{None} for no limit when C{rate} is 0.
    """
    if rate == 0:
        return None
    return SourceLimiter(rate, 2 * rate, 1000 * rate, 2000 * rate)


class _Request:
    """
    A registration from a proven source on its way through the stage
    manager's steps.
    """

    __slots__ = ("message", "datagram", "registration", "address", "now", "refresh", "secret", "nonce")

    def __init__(self, message, datagram, registration, address, now):
        self.message = message
        self.datagram = datagram
        self.registration = registration
        self.address = address
        self.now = now
        # What the answer gives the registrant: a new name secret, or the
        # nonce its next secret is made with.
        self.secret = self.nonce = None
        # Whether it repeats the entry's last registration, from the same
        # place and wanting the same peer: set once the entry is recorded.
        self.refresh = False


class _Handle:
    """
    What a refresh handle stands for: the entry it keeps, where from, the
    key its refreshes are signed with, the last counter and transaction
    taken, and until when it is good.
    """

    __slots__ = ("name", "address", "key", "counter", "transactionID", "expires")

    def __init__(self, name, address, key, expires):
        self.name = name
        self.address = address
        self.key = key
        self.counter = 0
        self.transactionID = None
        self.expires = expires


def _names(names) -> str:
    """
    Names for the log: C{"bob, carol"}, or C{"no one"}.
    """
    return ", ".join(names) or "no one"


def _isIPv6(address) -> bool:
    """
    Whether C{address} is IPv6, an IPv4-mapped one counting as IPv4.
    """
    return ":" in unmapped(address)[0]


def _unmappedOrNone(address):
    return None if address is None else unmapped(address)


def _then(result, f, *args):
    """
    Go on with C{f(result, *args)}: at once for a plain result, as the
    in-memory phonebook gives, or when a L{Deferred} result fires.
    """
    if isinstance(result, Deferred):
        return result.addCallback(f, *args)
    return f(result, *args)


@implementer(IStageManager)
class StageManagerProtocol(DatagramProtocol):
    """
    The stage manager.

    It answers every registration with the address it came from, keeps the
    phonebook, and the moment a peer seeks a peer that seeks it back, sends
    both of them an introduction at once: each other's public mapping and
    local addresses, and a fresh punch key.  It also answers plain STUN
    Binding requests from any STUN client.

    @ivar phonebook: The L{punchd.interfaces.IPhonebook}.
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
        dialects=(),
        cookies=None,
        registrationLimit: "SourceLimiter | None" = None,
        bindingLimit: "SourceLimiter | None" = None,
        key: "bytes | None" = None,
        relay=None,
        turn=None,
    ):
        """
        @param clock: The L{twisted.internet.interfaces.IReactorTime} that
            drives expiry and retransmission.
        @param phonebook: The L{punchd.interfaces.IPhonebook} to keep.
        @param sweepInterval: Seconds between two sweeps for expired entries.
        @param randomBytes: A function of a length returning that many
            random bytes, for punch keys and transaction ids.
        @param discovery: The L{punchd.discovery.BehaviourDiscovery} that
            answers Binding requests, when the stage manager offers NAT
            behaviour discovery; L{None} for plain answers.
        @param logAddresses: Whether the log shows peers' addresses.
        @param dialects: The L{punchd.interfaces.IServerDialect}s spoken
            on the port besides the stage manager's own protocol.
        @param cookies: The L{Cookies} that prove sources' addresses; by
            default new ones with a random key.
        @param registrationLimit: The L{SourceLimiter} of registrations by
            proven source address and port, and of the cookie challenges to
            unproven ones in all; L{None} for no limit.
        @param bindingLimit: The L{SourceLimiter} of Binding answers by
            source address and port; L{None} for no limit.
        @param key: With a shared secret, the key of the
            C{MESSAGE-INTEGRITY-SHA256} every datagram must carry and every
            answer carries; L{None} without.
        @param relay: With a phonebook shared by several stage managers,
            the L{punchd.relay.IntroductionRelay} that has another stage
            manager send the introductions of the peers it holds; L{None}
            without.
        @param turn: The L{punchd.turn.RelayOffer} whose TURN server and
            credentials each introduction carries; L{None} for none.
        """
        self.clock = clock
        self.turn = turn
        self.phonebook = phonebook
        self.stats = Counter()
        self.drops = DropCounter(clock)
        if not logAddresses:
            hideAddresses(self)
            hideAddresses(self.drops)
        self._randomBytes = randomBytes
        self.cookies = Cookies(clock, randomBytes=randomBytes) if cookies is None else cookies
        # The key of the first secrets and the nonces of names: see _claim.
        self._nameKey = randomBytes(32)
        self.registrationLimit = registrationLimit
        self.bindingLimit = bindingLimit
        self._key = key
        self.discovery = discovery
        self.relay = relay
        self.dialects = tuple(dialects)
        if not logAddresses:
            for dialect in self.dialects:
                hideAddresses(dialect)
        self._peerLog = TokenBucket(PEER_LOG_RATE, PEER_LOG_BURST, clock.seconds())
        self._unlogged = 0
        self._unloggedNoted = clock.seconds()
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = clock
        self._sweepInterval = sweepInterval
        # Introductions in flight, and the one in flight to each peer.
        self.introductions = Transactions(clock, self.write, limit=phonebook.maxEntries)
        self._introducing = {}
        # Refresh handles, by handle and by name, oldest first.
        self._handles = {}
        self._handleOf = {}
        # Handles count up from a random start, so that those of a stage
        # manager that restarted are not taken for its predecessor's; one
        # known is of no use without the entry's address and key.
        self._nextHandle = int.from_bytes(os.urandom(8), "big")
        self._handlers = {
            (stun.BINDING, stun.REQUEST): self._binding,
            (messages.REGISTER, stun.REQUEST): self._register,
            (messages.UNREGISTER, stun.REQUEST): self._unregister,
            (messages.REFRESH, stun.REQUEST): self._decodedRefresh,
            (messages.INTRODUCE, stun.SUCCESS): self._introductionAnswered,
            (messages.CANDIDATE, stun.SUCCESS): self._introductionAnswered,
        }

    def useNameKey(self, key: bytes):
        """
        Make the first secrets of names and the nonces that move secrets on
        with C{key} from now on: with a phonebook shared by several stage
        managers, the key they share, so that each makes what another
        would.
        """
        self._nameKey = key

    def startProtocol(self):
        # Every address the stage manager writes to came from its socket.
        self._send = udpsend.sender(self.transport, self.drops)
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
            self.discovery.attach((0, 0), self.write)
            self.log.info(
                "NAT behaviour discovery (RFC 5780) on {addresses}",
                addresses=self.discovery.describe(),
            )
        for dialect in self.dialects:
            dialect.attach(self)
            self.log.info("{dialect}", dialect=dialect.describe())
        if self.relay is not None:
            self.relay.attach(self)
        self._sweeper.start(self._sweepInterval, now=False)

    def stopProtocol(self):
        if self._sweeper.running:
            self._sweeper.stop()
        self.introductions.withdrawAll()

    def write(self, datagram: bytes, address, limit: "int | None" = None) -> bool:
        """
        Send a datagram from the stage manager's port, signed with the
        shared secret if there is one, counting its bytes.

        @param datagram: The datagram.
        @param address: Where to: C{(host, port)}.
        @param limit: For the answer to a datagram from a source that has
            not proven its address, the size of that datagram, which the
            answer may not exceed; L{None} for a proven source.
        @return: Whether it was sent: not if it would exceed C{limit}.
        """
        if self._key is not None:
            datagram = stun.addIntegritySHA256(datagram, self._key)
        if limit is not None and len(datagram) > limit:
            self.drops.drop(
                "answer larger than the request",
                formatAddress(address),
                f"{len(datagram)} bytes for {limit}",
            )
            return False
        self.stats["bytesSent"] += len(datagram)
        self._send(datagram, address)
        return True

    def _limited(self, limiter, address, proven=True) -> bool:
        # Sources are told apart by address and port, not by IP alone: a
        # spoofer sending from a victim's IP at other ports, or the peers
        # sharing one IP behind carrier-grade NAT, each have a bucket of
        # their own.  Traffic from sources not proven is charged only to
        # the total, never to a bucket a spoofer could empty for a victim.
        if limiter is None:
            return False
        now = self.clock.seconds()
        if limiter.take(address, 1, now) if proven else limiter.takeTotal(1, now):
            return False
        self.stats["rateLimited"] += 1
        self.drops.drop("rate-limited", formatAddress(address))
        return True

    def datagramReceived(self, datagram, address):
        self.stats["datagrams"] += 1
        self.stats["bytesReceived"] += len(datagram)
        if self._key is not None and not stun.verifyIntegritySHA256(datagram, self._key):
            self.drops.drop("unauthenticated", formatAddress(address), "no valid MESSAGE-INTEGRITY-SHA256")
            return
        if len(datagram) == messages.REFRESH_BYTES and datagram[:8] == messages.REFRESH_HEAD:
            # A proven peer's refresh, the stage manager's most common
            # datagram by far, read at fixed offsets, not decoded.
            if datagram[20:24] == messages.REFRESH_PROOF_HEAD:
                self._refresh(
                    datagram[8:20], datagram[24:32], datagram[32:36], datagram[36:], address, 48
                )
            else:
                self.drops.drop("malformed", formatAddress(address), "REFRESH without REFRESH-PROOF")
            return
        if (
            datagram[:8] == messages.BARE_BINDING_REQUEST
            and len(datagram) == 20
            and self.discovery is None
        ):
            # Most STUN clients' Binding request, the header alone: its
            # answer needs only the transaction ID, so it is not decoded.
            if self._limited(self.bindingLimit, address):
                return
            self.write(messages.bareBindingAnswer(datagram[8:], unmapped(address)), address)
            self.stats["bindings"] += 1
            return
        for dialect in self.dialects:
            if dialect.datagramReceived(datagram, address):
                return
        try:
            message = stun.decode(datagram)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
            return
        if (message.method, message.messageClass) == (messages.CANDIDATE, stun.REQUEST):
            # Its MESSAGE-INTEGRITY is checked against the datagram itself.
            handler = partial(self._candidate, datagram)
        else:
            handler = self._handlers.get((message.method, message.messageClass))
        if handler is None:
            self.drops.drop(
                "unexpected message",
                formatAddress(address),
                f"method {message.method:#05x} class {message.messageClass}",
            )
            return
        try:
            result = handler(message, address, datagram)
        except (stun.StunError, messages.InvalidMessage) as e:
            self._failed(e, message, address, len(datagram))
            return
        if isinstance(result, Deferred):
            result.addErrback(self._failedLater, message, address, len(datagram))

    def _failedLater(self, failure, message, address, size):
        failure.trap(stun.StunError, messages.InvalidMessage)
        self._failed(failure.value, message, address, size)

    def _failed(self, error, message, address, size):
        """
        Drop a message that broke a rule, refusing a request.
        """
        if isinstance(error, stun.StunError):
            self.drops.drop("malformed", formatAddress(address), str(error))
            return
        self.drops.drop("invalid", formatAddress(address), error.reason)
        if message.messageClass == stun.REQUEST:
            # A registration that proved its address gets the whole reason.
            cookie = message.get(messages.COOKIE)
            proven = cookie is not None and self.cookies.check(cookie, address)
            self._refuse(message, address, error, None if proven else size)

    def _refuse(self, message, address, error, limit=None):
        """
        Answer a request with an error, its reason cut short if the whole
        would exceed C{limit} bytes (L{None} for a proven source).
        """
        reason = error.reason
        answer = messages.encodeError(message.method, message.transactionID, error.code, reason)
        while limit is not None and len(answer) > limit and reason:
            reason = reason[: max(0, len(reason) - (len(answer) - limit))].rstrip()
            answer = messages.encodeError(message.method, message.transactionID, error.code, reason)
        self.write(answer, address, limit)

    def _binding(self, message, address, datagram):
        if self._limited(self.bindingLimit, address):
            return
        if self.discovery is not None:
            self.discovery.answer((0, 0), message, address)
        else:
            self.write(messages.bindingAnswer(message, unmapped(address)), address)
        self.stats["bindings"] += 1

    def _register(self, message, address, datagram):
        """
        A registration: admit it, claim the name, record the entry, answer,
        and introduce; each step goes on from the phonebook's answer.
        """
        registration = messages.parseRegistration(message)
        proven = registration.cookie is not None and self.cookies.check(
            registration.cookie, address
        )
        if self._limited(self.registrationLimit, address, proven):
            return None
        if not proven:
            # Anyone may send this from anyone's address: it gets only a
            # cookie to echo, no larger than itself, and changes nothing,
            # not even what is looked up.
            self.stats["challenges"] += 1
            self.write(
                messages.encodeChallenge(message.transactionID, self.cookies.issue(address)),
                address,
                len(datagram),
            )
            return None
        now = self.clock.seconds()
        if registration.natDropped is not None:
            self.drops.drop("unknown NAT behaviour", formatAddress(address), registration.natDropped)
        if registration.localAddresses:
            registration = self._usableLocally(registration, address)
        request = _Request(message, datagram, registration, address, now)
        if registration.secondFamily:
            return _then(self.phonebook.lookup(registration.name, now), self._secondFamily, request)
        return _then(self.phonebook.lookup(registration.name, now), self._claim, request)

    def _secondFamily(self, existing, request):
        """
        A registration that only gives the name's public address of its
        other family (L{messages.SECOND_FAMILY}): taken from the holder of
        the name's secret alone, from the family the entry's address is
        not of, and recorded beside the entry, which it changes in nothing
        else; the name's secret does not move on.
        """
        name, address = request.registration.name, request.address
        if existing is None or existing.secret is None or self._proof(existing, request.datagram) is None:
            self._secondRefused(
                request,
                f"{name} is not registered with the proof of its secret;"
                " register in full first",
                messages.NAME_TAKEN,
            )
            return None
        if _isIPv6(address) == _isIPv6(existing.address):
            self._secondRefused(
                request,
                f"{formatAddress(unmapped(address))} is of the family of {name}'s address",
                messages.BAD_REQUEST,
            )
            return None
        # Read first: the in-memory phonebook changes the entry in place.
        before = existing.secondAddress(request.now)
        return _then(
            self.phonebook.alsoAt(name, address, request.now),
            self._secondRecorded,
            request,
            existing,
            before,
        )

    def _secondRecorded(self, recorded, request, entry, before):
        name, address = request.registration.name, request.address
        if not recorded:
            self._secondRefused(request, f"{name} is not registered", messages.NAME_TAKEN)
            return
        self.stats["secondFamilies"] += 1
        self.write(
            messages.encodeRegistered(
                request.message.transactionID,
                unmapped(address),
                int(self.phonebook.ttl),
                cookie=self.cookies.issue(address, request.registration.cookie),
            ),
            address,
        )
        if before == address:
            return
        self._peerEvent(
            self.log.info,
            "{name} is also at {address}",
            name=name,
            address=formatAddress(unmapped(address)),
        )
        # New since the introductions it may have had, which lacked it.
        candidate = messages.RelayCandidate(name, unmapped(address), other=True)
        for wanted in entry.wants:
            sent = _then(
                self.phonebook.lookup(wanted, request.now), self._sendSecond, entry, candidate
            )
            if isinstance(sent, Deferred):
                sent.addErrback(self._secondNotSent, name, wanted)

    def _sendSecond(self, other, entry, candidate):
        if other is not None and entry.name in other.wants and other.secret is not None:
            self._sendCandidate(other, candidate, entry.name)

    def _secondNotSent(self, failure, name, wanted):
        # A shared phonebook out of reach: the next introduction carries it.
        failure.trap(messages.InvalidMessage)
        self.drops.drop(
            "other family not forwarded", name, f"to {wanted}: {failure.value.reason}"
        )

    def _secondRefused(self, request, reason, code):
        self.stats["secondFamiliesRefused"] += 1
        self.drops.drop("second family refused", formatAddress(request.address), reason)
        self._refuse(request.message, request.address, messages.InvalidMessage(reason, code))

    def _decodedRefresh(self, message, address, datagram):
        handle, counter, mac = messages.parseRefresh(message)
        self._refresh(message.transactionID, handle, counter, mac, address, len(datagram))

    def _refresh(self, transactionID, handle, counter, mac, address, size):
        """
        A refresh: keep the entry its handle stands for, if it comes from
        the entry's address, signed with the name's key, with a counter
        higher than any taken before; answer with the header alone.

        A refresh the stage manager cannot take (an unknown or stale
        handle, an entry gone or moved, another address) is answered with
        L{messages.REGISTER_IN_FULL}, smaller than the refresh, as to a
        source not proven; one with a bad MAC, or a counter taken before,
        is dropped.
        """
        h = self._handles.get(handle)
        now = self.clock.seconds()
        if h is None or h.expires <= now or h.address != address:
            self._refreshRefused(transactionID, address, size, "unknown, stale or elsewhere")
            return
        if not hmac.compare_digest(
            messages.refreshMAC(h.key, transactionID, handle, counter), mac
        ):
            self.stats["refreshesUnauthenticated"] += 1
            self.drops.drop("unauthenticated refresh", formatAddress(address))
            return
        counter = int.from_bytes(counter, "big")
        if counter <= h.counter:
            if counter == h.counter and transactionID == h.transactionID:
                # The last refresh again, its answer lost: answered again,
                # nothing changed.
                self.write(messages.encodeRefreshed(transactionID), address)
                return
            self.stats["refreshesReplayed"] += 1
            self.drops.drop("replayed refresh", formatAddress(address))
            return
        if self._limited(self.registrationLimit, address):
            return
        h.counter = counter
        h.transactionID = transactionID
        kept = self.phonebook.refresh(h.name, address, now)
        if isinstance(kept, Deferred):
            kept.addCallbacks(
                self._refreshed,
                self._refreshFailed,
                (transactionID, handle, h, address, size),
                None,
                (transactionID, address, size),
            )
        else:
            self._refreshed(kept, transactionID, handle, h, address, size)

    def _refreshed(self, kept, transactionID, handle, h, address, size):
        if not kept:
            if self._handleOf.get(h.name) == handle:
                self._forgetHandle(h.name)
            self._refreshRefused(
                transactionID, address, size, "entry gone, moved or held elsewhere"
            )
            return
        self.stats["refreshes"] += 1
        self.write(messages.encodeRefreshed(transactionID), address)

    def _refreshFailed(self, failure, transactionID, address, size):
        # A shared phonebook out of reach: the peer is told to register in
        # full, and its registration is refused with the reason.
        failure.trap(messages.InvalidMessage)
        self._refreshRefused(transactionID, address, size, failure.value.reason)

    def _refreshRefused(self, transactionID, address, size, why):
        if self._limited(self.registrationLimit, address, False):
            return
        self.stats["refreshesRefused"] += 1
        self.drops.drop("refresh refused", formatAddress(address), why)
        self.write(messages.encodeRefreshRefused(transactionID), address, size)

    def _issueHandle(self, entry, address, now):
        """
        A new refresh handle for C{entry}, replacing any the name had, good
        as long as a cookie issued now would be at the least: a refresh
        proves the address no longer ago than a registration's cookie.

        @return: The handle and its lifetime in seconds, or L{None}.
        """
        if entry.secret is None:
            return None
        self._forgetHandle(entry.name)
        self._nextHandle = (self._nextHandle + 1) & 0xFFFFFFFFFFFFFFFF
        handle = self._nextHandle.to_bytes(messages.HANDLE_BYTES, "big")
        lifetime = int(self.cookies.period)
        self._handles[handle] = _Handle(
            entry.name, address, messages.refreshKey(entry.secret), now + lifetime
        )
        self._handleOf[entry.name] = handle
        return handle, lifetime

    def _forgetHandle(self, name):
        handle = self._handleOf.pop(name, None)
        if handle is not None:
            del self._handles[handle]

    def _sweepHandles(self, now):
        handles = self._handles
        while handles:
            handle, h = next(iter(handles.items()))
            if h.expires > now:
                break
            del handles[handle]
            if self._handleOf.get(h.name) == handle:
                del self._handleOf[h.name]

    def _usableLocally(self, registration, address):
        """
        Leave out of a registration the local addresses no peer could send
        to, counting each.
        """
        usable = []
        for local in registration.localAddresses:
            why = unusableReason(local)
            if why is None:
                usable.append(local)
            else:
                self.drops.drop(
                    "unusable local address",
                    formatAddress(address),
                    f"{formatAddress(local)}: {why}",
                )
        if len(usable) == len(registration.localAddresses):
            return registration
        return dataclasses.replace(registration, localAddresses=tuple(usable))

    def _claim(self, existing, request):
        """
        Refuse a registration of a held name that does not prove it holds
        the name's secret; otherwise record it, with the name's next
        secret.
        """
        registration = request.registration
        previous = None
        if existing is not None and existing.secret is not None:
            proof = self._proof(existing, request.datagram)
            if proof is not None:
                # The secret is never sent again: both sides make the next
                # one from the one proven and a nonce.  The nonce depends
                # only on that secret and the transaction, so that a
                # retransmission, or a late duplicate, of the request
                # leads to the same next secret.
                request.nonce = self._nonce(proof, request.message.transactionID)
                secret = messages.nextSecret(proof, request.nonce)
                previous = proof
            elif existing.previousSecret is None and hmac.compare_digest(
                existing.secret, self._firstSecret(request)
            ):
                # A retransmission of the registration that was given the
                # secret, whose answer was lost: it gets the same again.
                secret = None
                request.secret = existing.secret
            else:
                self.stats["takeoversRefused"] += 1
                self.drops.drop("name taken", formatAddress(request.address), registration.name)
                self._refuse(
                    request.message,
                    request.address,
                    messages.InvalidMessage(
                        f"{registration.name} is registered; only the holder of its"
                        " secret can register it",
                        messages.NAME_TAKEN,
                    ),
                )
                return None
        else:
            # A new name, or one of a peer of another dialect, which has
            # nothing to hold it with: it gets a secret of its own.
            secret = request.secret = self._firstSecret(request)
        try:
            result = self.phonebook.register(
                registration.name,
                request.address,
                registration.localAddresses,
                registration.wants,
                request.now,
                True,
                secret,
                previous,
                registration.nat,
            )
        except (PhonebookFull, SourceQuotaReached) as e:
            return self._noRoom(e, request)
        if isinstance(result, Deferred):
            return result.addCallbacks(
                self._recorded, self._noRoomLater, callbackArgs=(request,), errbackArgs=(request,)
            )
        return self._recorded(result, request)

    def _noRoomLater(self, failure, request):
        failure.trap(PhonebookFull, SourceQuotaReached)
        return self._noRoom(failure.value, request)

    def _noRoom(self, error, request):
        """
        Refuse a registration the phonebook has no room for: no live entry
        is forgotten to make room, and no source holds more than its share.
        """
        name = request.registration.name
        if isinstance(error, PhonebookFull):
            self.stats["phonebookFull"] += 1
            self.drops.drop("phonebook full", formatAddress(request.address), name)
            refusal = messages.InvalidMessage(
                f"the phonebook is full ({self.phonebook.maxEntries} names); try again later",
                messages.PHONEBOOK_FULL,
            )
        else:
            self.stats["quotaReached"] += 1
            self.drops.drop(
                f"names per {error.what} reached", formatAddress(request.address), name
            )
            refusal = messages.InvalidMessage(
                f"this {error.what} holds {error.limit} names already, the most it may",
                messages.QUOTA_REACHED,
            )
        self._refuse(request.message, request.address, refusal)

    def _proof(self, entry, datagram) -> "bytes | None":
        """
        The secret of C{entry}, the current one or the previous one, that
        keys the C{MESSAGE-INTEGRITY} of C{datagram}, or L{None}.
        """
        for secret in (entry.secret, entry.previousSecret):
            if secret is not None and stun.verifyIntegrity(
                datagram, messages.registrationKey(secret)
            ):
                return secret
        return None

    def _firstSecret(self, request) -> bytes:
        """
        The secret given to the registrant of a new name: a MAC of the
        name, the address and the transaction under a key of the stage
        manager's, so that a retransmission gets the same one, and nobody
        else can make it.
        """
        host, port = request.address[0], request.address[1]
        # Keyed BLAKE2s (RFC 7693), as the cookies: made and checked only
        # by stage managers, so its choice is theirs alone.
        return blake2s(
            b"first\0%s\0%s\0%d\0%s"
            % (
                request.registration.name.encode("utf-8"),
                host.encode("utf-8", "surrogateescape"),
                port,
                request.message.transactionID,
            ),
            key=self._nameKey,
            digest_size=messages.SECRET_BYTES,
        ).digest()

    def _nonce(self, secret, transactionID) -> bytes:
        return blake2s(
            b"nonce\0" + secret + transactionID, key=self._nameKey, digest_size=messages.NONCE_BYTES
        ).digest()

    def _recorded(self, result, request):
        """
        Count and log the entry, and look up the contacts it seeks.
        """
        entry, previous = result
        registration = request.registration
        self.stats["registrations"] += 1
        request.refresh = self._logRegistration(entry, previous)
        for dialect in self.dialects:
            dialect.registered(entry, previous, registration.seeking)
        return self._lookupSought(request, entry, [])

    def _lookupSought(self, request, entry, found):
        """
        Look up, one after the other, the contacts the registration seeks;
        then answer it.

        @param found: The entries (or L{None}s) of those looked up so far.
        """
        seeking = request.registration.seeking
        if len(found) == len(seeking):
            return self._answer(request, entry, found)
        return _then(
            self.phonebook.lookup(seeking[len(found)], request.now),
            self._foundSought,
            request,
            entry,
            found,
        )

    def _foundSought(self, other, request, entry, found):
        found.append(other)
        return self._lookupSought(request, entry, found)

    def _dialectOf(self, entry):
        for dialect in self.dialects:
            if dialect.speaksFor(entry):
                return dialect
        return None

    def _peerState(self, entry, other):
        """
        Where C{other}, a contact C{entry} seeks, stands: a L{PEER_STATE}
        value, and the dialect that speaks for it, or L{None}.
        """
        if other is None:
            return messages.PEER_WAITING, None
        dialect = self._dialectOf(other)
        if dialect is not None:
            # A dialect's peer may be unable to say whom it wants: see
            # punchd.compat.server for why it is introduced all the same,
            # once it has proven its address as its dialect can.
            if other.proven:
                return messages.PEER_INTRODUCED, dialect
            return messages.PEER_WAITING, None
        if entry.name not in other.wants:
            return messages.PEER_WAITING, None
        return messages.PEER_INTRODUCED, None

    def _answer(self, request, entry, others):
        """
        Answer the registration, saying where each contact it seeks stands,
        and introduce it to each that wants it too.

        @param others: The entries of the contacts it seeks (or L{None}s),
            in order.
        """
        states = [self._peerState(entry, other) for other in others]
        message, address = request.message, request.address
        self.write(
            messages.encodeRegistered(
                message.transactionID,
                unmapped(address),
                int(self.phonebook.ttl),
                tuple(state for state, _ in states),
                self.cookies.issue(address, request.registration.cookie),
                request.secret,
                request.nonce,
                self._issueHandle(entry, address, request.now),
            ),
            address,
        )
        for wanted, other, (state, dialect) in zip(request.registration.seeking, others, states):
            if dialect is not None:
                dialect.introduce(entry, other)
            elif state == messages.PEER_INTRODUCED:
                self._introduce(entry, other)
            elif not request.refresh:
                # Said when the peer registers, moves or wants another, not
                # at each refresh while it waits: anyone can make the stage
                # manager log, but only at the pace of changes to its entry.
                self._peerEvent(
                    self.log.info,
                    "{name} is looking for {wants}, who is {why}: no introduction yet",
                    name=entry.name,
                    wants=wanted,
                    why="not registered"
                    if other is None
                    else f"looking for {_names(other.wants)}",
                )

    def _logRegistration(self, entry, previous) -> bool:
        """
        Log a proven entry that is new, or changed.

        @return: Whether the registration was a refresh of a proven entry,
            from the same place: not logged.
        """
        known = previous is not None and previous.proven
        if known and previous.samePlace(entry):
            # A refresh, the stage manager's most common datagram by far:
            # one per peer every interval.  Counted in stats, never logged,
            # not even at debug level, which twistd writes out: a line per
            # refresh cost more than the rest of the registration.
            return True
        if not self._peerLogged():
            # Counted, not logged: the line's fields are not even made,
            # which was a sixth of a first registration's cost under load.
            return False
        fields = dict(
            name=entry.name,
            address=formatAddress(entry.address),
            localAddresses=", ".join(map(formatAddress, entry.localAddresses)) or "none",
            wants=_names(entry.wants),
        )
        if not known:
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
                previousWants=_names(previous.wants),
                **fields,
            )
        return False

    def _introduce(self, a, b):
        """
        Introduce C{a}, who just registered, and C{b} to each other.
        """
        key = self._randomBytes(messages.PUNCH_KEY_BYTES)
        for to, about in ((a, b), (b, a)):
            self._sendIntroduction(
                to,
                messages.Introduction(
                    about.name,
                    unmapped(about.address),
                    about.localAddresses,
                    key,
                    self._turnCredentials(to),
                    about.nat,
                    otherAddress=_unmappedOrNone(about.secondAddress(self.clock.seconds())),
                ),
            )
        self.stats["introductions"] += 1
        self._peerEvent(
            self.log.info,
            "Introduced {a} at {aAddress} and {b} at {bAddress}",
            a=a.name,
            aAddress=formatAddress(a.address),
            b=b.name,
            bAddress=formatAddress(b.address),
        )

    def _turnCredentials(self, entry):
        """
        The TURN server and fresh credentials for the peer C{entry}, or
        L{None} when the stage manager offers no relay.
        """
        if self.turn is None:
            return None
        username, password = self.turn.credentials(entry.name, self.clock.seconds())
        return messages.TurnCredentials(self.turn.server, username, password, self.turn.realm)

    def _candidate(self, datagram, message, address, size):
        """
        A peer's relayed candidate, or its NAT's behaviour found after its
        introduction: from the holder of its name (at the name's address,
        signed with the name's introduction key), for a peer it was
        introduced to; forwarded to that peer as an introduction is, and
        acknowledged.
        """
        if self._limited(self.registrationLimit, address):
            return None
        candidate = messages.parseCandidate(message)
        if candidate.peer is None:
            raise messages.InvalidMessage("CANDIDATE lacks PEER")
        if candidate.other:
            # An address a peer names for itself may be anyone's: only one
            # the stage manager saw goes to another peer.
            raise messages.InvalidMessage(
                "CANDIDATE with PEER-OTHER-ADDRESS: register the other family instead"
            )
        return _then(
            self.phonebook.lookup(candidate.name, self.clock.seconds()),
            self._candidateFrom,
            datagram,
            message,
            address,
            candidate,
        )

    def _candidateFrom(self, entry, datagram, message, address, candidate):
        if (
            entry is None
            or entry.address != address
            or not any(
                stun.verifyIntegrity(datagram, messages.introductionKey(secret))
                for secret in (entry.secret, entry.previousSecret)
                if secret is not None
            )
        ):
            # Not a word back: only the name's holder can send one.
            self.drops.drop(
                "unauthenticated candidate",
                formatAddress(address),
                f"not from the holder of {candidate.name}",
            )
            return None
        if candidate.peer not in entry.wants:
            raise messages.InvalidMessage(f"{candidate.peer} is not a contact of {candidate.name}")
        return _then(
            self.phonebook.lookup(candidate.peer, self.clock.seconds()),
            self._forwardCandidate,
            entry,
            message,
            candidate,
        )

    def _forwardCandidate(self, other, entry, message, candidate):
        if other is None or entry.name not in other.wants or other.secret is None:
            raise messages.InvalidMessage(
                f"{candidate.peer} is not registered looking for {candidate.name}"
            )
        self.write(
            messages.encodeSuccess(messages.CANDIDATE, message.transactionID), entry.address
        )
        if candidate.natDropped is not None:
            self.drops.drop(
                "unknown NAT behaviour", formatAddress(entry.address), candidate.natDropped
            )
            if candidate.address is None:
                return
        self._sendCandidate(
            other,
            messages.RelayCandidate(
                candidate.name, candidate.address, nat=candidate.nat, mapped=candidate.mapped
            ),
            entry.name,
        )

    def _sendCandidate(self, other, candidate, name):
        """
        Send C{name}'s C{candidate} to the peer C{other}, signed as
        introductions are, and again until it is acknowledged.
        """
        txid = self._randomBytes(12)
        # Signed as introductions are: with the previous secret while there
        # is one, which the peer surely holds.
        key = messages.introductionKey(other.previousSecret or other.secret)
        d = self.introductions.request(
            txid,
            messages.encodeCandidate(txid, candidate, key),
            other.address,
            INTRODUCTION_RETRIES,
        )
        d.addErrback(self._unacknowledged, other)
        self.stats["candidates"] += 1
        self.log.info(
            "Forwarded {name}'s {what} to {peer}",
            name=name,
            what="NAT behaviour"
            if candidate.address is None
            else f"{candidate.kind} address {formatAddress(candidate.address)}",
            peer=other.name,
        )

    def _sendIntroduction(self, to, introduction):
        if self.relay is not None and self.relay.elsewhere(to):
            # Its NAT lets in only the stage manager it registered with.
            self.relay.relay(to, introduction)
            return
        self.sendIntroduction(
            to, lambda txid, key: messages.encodeIntroduction(txid, introduction, key)
        )

    def sendIntroduction(self, to, encode):
        """
        Send an introduction, signed for its recipient, and again until it
        is acknowledged.  Only peers that proved their address are
        introduced, so what is retransmitted cannot be aimed at a victim.

        @param to: The entry of the peer to send it to.
        @param encode: A function of a transaction ID and the recipient's
            L{messages.introductionKey} that encodes it.
        """
        # One introduction in flight per peer: a newer one replaces it.
        previous = self._introducing.get(to.name)
        if previous is not None:
            self.introductions.withdraw(previous)
        txid = self._randomBytes(12)
        # The previous secret when there is one: the peer surely holds it,
        # whether or not the answer that replaced it reached it.
        datagram = encode(txid, messages.introductionKey(to.previousSecret or to.secret))
        d = self.introductions.request(txid, datagram, to.address, INTRODUCTION_RETRIES)
        self._introducing[to.name] = txid
        d.addErrback(self._unacknowledged, to)
        d.addBoth(self._introductionDone, to.name, txid)

    def _unacknowledged(self, failure, to):
        failure.trap(TransactionTimeout, CancelledError)
        if failure.check(TransactionTimeout):
            self._peerEvent(
                self.log.warn,
                "{name} at {address} never acknowledged its introduction",
                name=to.name,
                address=formatAddress(to.address),
            )

    def _introductionDone(self, _, name, txid):
        if self._introducing.get(name) == txid:
            del self._introducing[name]

    def _introductionAnswered(self, message, address, datagram):
        if self.introductions.addressOf(message.transactionID) != address:
            self.drops.drop("unexpected message", formatAddress(address), "stale introduction answer")
            return
        self.introductions.answer(message.transactionID)

    def _unregister(self, message, address, datagram):
        name = messages.parseUnregister(message)
        return _then(
            self.phonebook.lookup(name, self.clock.seconds()),
            self._forgetEntry,
            message,
            address,
            datagram,
            name,
        )

    def _forgetEntry(self, entry, message, address, datagram, name):
        if entry is None or entry.address != address:
            raise messages.InvalidMessage(f"{name} is not registered from this address")
        if entry.secret is not None and self._proof(entry, datagram) is None:
            raise messages.InvalidMessage(
                f"only the holder of {name}'s secret can unregister it", messages.NAME_TAKEN
            )
        return _then(
            self.phonebook.remove(name), self._forgotten, message, address, len(datagram), name
        )

    def _forgotten(self, _, message, address, size, name):
        self.stats["unregistrations"] += 1
        self._forgetHandle(name)
        self.write(
            messages.encodeSuccess(messages.UNREGISTER, message.transactionID),
            address,
            size,
        )
        self._peerEvent(
            self.log.info, "{name} at {address} left", name=name, address=formatAddress(address)
        )

    def _peerEvent(self, emit, format, **fields):
        """
        Log a line about a peer with C{emit} (C{self.log.info} or
        C{self.log.warn}), within L{PEER_LOG_RATE}; past it, count it.
        """
        if self._peerLogged():
            emit(format, **fields)

    def _peerLogged(self) -> bool:
        """
        Whether a line about a peer may be logged now, within
        L{PEER_LOG_RATE}; if not, it is counted as not logged.
        """
        if self._peerLog.take(1, self.clock.seconds()):
            return True
        self._unlogged += 1
        self.stats["unloggedEvents"] += 1
        return False

    def _noteUnlogged(self, now):
        if self._unlogged and now - self._unloggedNoted >= UNLOGGED_NOTE_INTERVAL:
            self.log.warn(
                "{count} peer event(s) not logged in the last {seconds:.0f} s:"
                " more than {rate:.0f} a second",
                count=self._unlogged,
                seconds=now - self._unloggedNoted,
                rate=PEER_LOG_RATE,
            )
            self._unlogged = 0
            self._unloggedNoted = now

    def _sweep(self):
        now = self.clock.seconds()
        self._noteUnlogged(now)
        self._sweepHandles(now)
        _then(self.phonebook.expire(now), self._expired)

    def _expired(self, entries):
        for entry in entries:
            self.stats["expiries"] += 1
            if not entry.proven:
                # A dialect's client that never proved its address comes
                # and goes unlogged: anyone could have registered it.
                continue
            self._peerEvent(
                self.log.info,
                "{name} at {address} expired: not heard from in {ttl} s",
                name=entry.name,
                address=formatAddress(entry.address),
                ttl=self.phonebook.ttl,
            )
