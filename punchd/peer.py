"""
The peer: registers with the stage manager, and punches and keeps a direct
path to the peer it is introduced to.
"""

from collections import deque

from twisted.internet.address import IPv6Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from punchd import messages, seedprotocol, stun
from punchd.addresses import formatAddress
from punchd.drops import DropCounter
from punchd.natprobe import NATProbe, ProbeError
from punchd.punching import FAILED, LOST, PUNCHING, UP, Punch
from punchd.seedcontact import OriginalContact

#: How many of the direct messages received a peer keeps, for whoever
#: embeds it: a peer runs for months, at a message a second.
RECEIVED_KEPT = 100

#: Seconds before the first retransmission of an unanswered registration;
#: each later one waits twice as long, up to the refresh interval.
REGISTRATION_RTO = 0.5

#: Seconds a peer whose first registration was answered with an
#: introduction on its way waits for it before proving its address anyway.
PROOF_DELAY = 1.0

#: After this many unanswered transmissions of one registration, the peer
#: says plainly that the stage manager is not answering.
NOT_ANSWERING_AFTER = 5


def defaultMessage(name: str, wants: str) -> str:
    """
    The direct message the original test client sends.
    """
    return f"This is a direct P2P message from {name} to {wants}"


def _printable(text: str) -> str:
    return text if text.isprintable() else ascii(text)


class PeerProtocol(DatagramProtocol):
    """
    A peer.

    It registers with the stage manager at start and every C{interval}
    seconds, retransmitting an unanswered registration with backoff.  When
    the stage manager introduces the peer it wants, it starts a
    L{punchd.punching.Punch}; while it has no direct path and is not
    punching, its registrations ask for an introduction.

    @ivar publicAddress: This peer's address as the stage manager saw it, or
        L{None} before the first answer.
    @ivar punch: The current L{Punch}, or L{None} before the first
        introduction.
    @ivar received: The last L{RECEIVED_KEPT} direct messages received, as
        C{(text, source)}.
    @ivar drops: The L{DropCounter} of datagrams dropped, by reason.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock,
        server,
        name: str,
        wants: str,
        localHosts=(),
        interval: float = 20.0,
        text: "str | None" = None,
        newTransactionID=stun.newTransactionID,
        discoverNAT: bool = True,
        key: "bytes | None" = None,
        **punchSettings,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param server: The stage manager's C{(host, port)}, resolved.
        @param name: This peer's name.
        @param wants: The name of the peer to reach.
        @param localHosts: This machine's addresses on its own network; the
            peer reports them with its port as local candidates.
        @param interval: Seconds between registrations.
        @param text: The direct message to send; by default the original's.
        @param discoverNAT: Whether to find out at start how the NAT in
            front of this peer behaves, when the stage manager offers NAT
            behaviour discovery, and log the verdict.
        @param key: With a shared secret, the key of the
            C{MESSAGE-INTEGRITY-SHA256} that every datagram to and from the
            stage manager carries; L{None} without.
        @param punchSettings: Keyword arguments for each L{Punch}: its
            timeouts and intervals.
        """
        self.clock = clock
        self.server = server
        self.name = name
        self.wants = wants
        self.interval = interval
        self.text = defaultMessage(name, wants) if text is None else text
        self.publicAddress = None
        self.punch = None
        self.received = deque(maxlen=RECEIVED_KEPT)
        self.drops = DropCounter(clock)
        self._localHosts = tuple(localHosts)
        self._newTransactionID = newTransactionID
        self._punchSettings = punchSettings
        self._refresher = LoopingCall(self._refresh)
        self._refresher.clock = clock
        self._registration = None
        self._retry = None
        self._attempts = 0
        self._firstAttemptAt = None
        self._serverSilent = False
        self._peerState = None
        self._ipv6 = False
        self._key = key
        self._cookie = None
        self._secret = None
        self._challenged = False
        self._proof = None
        self._discoverNAT = discoverNAT
        self.natProbe = None
        self.natBehaviour = None

    def startProtocol(self):
        host = self.transport.getHost()
        self._ipv6 = isinstance(host, IPv6Address)
        self.localAddresses = tuple((h, host.port) for h in self._localHosts)
        self.log.info(
            "Stage manager: {server}. My name: {name}, looking for {wants}."
            " Listening on port {port}.",
            server=formatAddress(self.server),
            name=self.name,
            wants=self.wants,
            port=host.port,
        )
        self._refresher.start(self.interval, now=True)
        if self._discoverNAT:
            self._startNATProbe(host.port)

    def _startNATProbe(self, port):
        self.natProbe = NATProbe(
            self.clock, self._probeSend, self.server, port, self._localHosts, drops=self.drops
        )
        d = self.natProbe.run()

        def found(behaviour):
            self.natBehaviour = behaviour
            self.log.info("My NAT: {verdict}", verdict=behaviour.verdict())

        def unknown(failure):
            failure.trap(ProbeError)
            self.log.info(
                "My NAT's behaviour is unknown: {reason}", reason=failure.getErrorMessage()
            )

        d.addCallbacks(found, unknown)
        d.addBoth(lambda _: setattr(self, "natProbe", None))

    def _probeSend(self, datagram, address):
        if address == self.server:
            self._toServer(datagram)
        else:
            self.transport.write(datagram, address)

    def stopProtocol(self):
        if self._refresher.running:
            self._refresher.stop()
        if self.natProbe is not None:
            self.natProbe.cancel()
        self._cancelRetry()
        if self._proof is not None and self._proof.active():
            self._proof.cancel()
        if self.punch is not None:
            self.punch.stop()

    def leave(self):
        """
        Tell the stage manager to forget this peer, if it registered.

        Fire and forget: a lost goodbye only means the entry expires.
        """
        if self.publicAddress is not None:
            self._toServer(
                messages.encodeUnregister(self._newTransactionID(), self.name, self._secret)
            )
            self.log.info("Told the stage manager to forget {name}", name=self.name)

    # Registration

    @property
    def seeking(self) -> bool:
        """
        Whether this peer wants an introduction: it has no direct path and
        is not punching one.
        """
        return self.punch is None or self.punch.state in (FAILED, LOST)

    def _refresh(self):
        if self._registration is None:
            self.register()

    def _toServer(self, datagram):
        """
        Send a datagram to the stage manager, signed with the shared secret
        if there is one.
        """
        if self._key is not None:
            datagram = stun.addIntegritySHA256(datagram, self._key)
        self.transport.write(datagram, self.server)

    def register(self, seeking: "bool | None" = None):
        """
        Register now, replacing any registration still unanswered.

        Without a cookie from the stage manager, the registration is padded
        to L{messages.UNPROVEN_REGISTRATION_BYTES}, so that the stage
        manager can answer it, and introduce this peer, without sending
        more than it received.

        @param seeking: Whether to ask for an introduction; by default,
            whenever this peer has no direct path and is not punching.
        """
        self._cancelRetry()
        txid = self._newTransactionID()
        registration = messages.Registration(
            self.name,
            self.wants,
            self.localAddresses,
            self.seeking if seeking is None else seeking,
            self._cookie,
            self._secret,
        )
        self._registration = (
            txid,
            messages.encodeRegistration(
                txid,
                registration,
                messages.UNPROVEN_REGISTRATION_BYTES if self._cookie is None else 0,
            ),
            registration,
        )
        self._attempts = 0
        self._firstAttemptAt = self.clock.seconds()
        self._transmitRegistration()

    def _transmitRegistration(self):
        self._toServer(self._registration[1])
        self._attempts += 1
        if self._attempts == NOT_ANSWERING_AFTER and not self._serverSilent:
            self._serverSilent = True
            self.log.warn(
                "The stage manager at {server} is not answering: {attempts} tries"
                " over {seconds:.1f} s went unanswered. Is it running, and can UDP"
                " reach port {port} from here? Still trying.",
                server=formatAddress(self.server),
                attempts=self._attempts,
                seconds=self.clock.seconds() - self._firstAttemptAt,
                port=self.server[1],
            )
        delay = min(REGISTRATION_RTO * 2 ** (self._attempts - 1), self.interval)
        self._retry = self.clock.callLater(delay, self._transmitRegistration)

    def _cancelRetry(self):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None

    def _answered(self, message):
        """
        Match an answer to the registration in flight.

        @return: The L{messages.Registration} it answers, or L{None}.
        """
        if self._registration is None or message.transactionID != self._registration[0]:
            return None
        registration = self._registration[2]
        self._cancelRetry()
        self._registration = None
        if self._serverSilent:
            self._serverSilent = False
            self.log.info(
                "The stage manager at {server} is answering again",
                server=formatAddress(self.server),
            )
        return registration

    def _registered(self, message, registration):
        answer = messages.parseRegistered(message)
        self._challenged = False
        self._cookie = answer.cookie
        self._secret = answer.secret
        if registration.cookie is None and answer.cookie is not None:
            # Prove our address, so that the stage manager may introduce us
            # to a peer that registers later, and retransmit what it sends
            # us.  If an introduction is on its way, once it is here; if it
            # was lost, the proof asks for another.
            if answer.peerState == messages.PEER_INTRODUCED and self.seeking:
                self._proof = self.clock.callLater(PROOF_DELAY, self.register)
            else:
                self.register()
        if answer.observed != self.publicAddress:
            if self.publicAddress is None:
                self.log.info(
                    "Registered with the stage manager as {name}. My public address"
                    " is {address}{portNote}.",
                    name=self.name,
                    address=formatAddress(answer.observed),
                    portNote=self._portNote(answer.observed),
                )
            else:
                self.log.info(
                    "My public address changed from {previous} to {address}:"
                    " my NAT gave me a new mapping",
                    previous=formatAddress(self.publicAddress),
                    address=formatAddress(answer.observed),
                )
            self.publicAddress = answer.observed
            if answer.lifetime <= self.interval:
                self.log.warn(
                    "The stage manager forgets a peer after {lifetime} s, but I"
                    " register only every {interval} s: use a shorter --interval",
                    lifetime=answer.lifetime,
                    interval=self.interval,
                )
        if answer.peerState != self._peerState:
            self._peerState = answer.peerState
            if answer.peerState == messages.PEER_ABSENT:
                self.log.info("Waiting for {wants} to register", wants=self.wants)
            elif answer.peerState == messages.PEER_WANTS_ANOTHER:
                self.log.info(
                    "{wants} is registered but looking for another peer; waiting"
                    " until it looks for {name}",
                    wants=self.wants,
                    name=self.name,
                )

    def _portNote(self, observed):
        port = self.transport.getHost().port
        if observed[1] == port:
            return f" (my NAT, if any, kept my port {port})"
        return f" (my NAT mapped my port {port} to {observed[1]})"

    def _refused(self, message, registration):
        value = message.get(stun.ERROR_CODE)
        try:
            code, reason = stun.decodeErrorCode(value) if value else (0, "no reason")
        except stun.StunError:
            code, reason = 0, "unreadable reason"
        cookie = message.get(messages.COOKIE)
        if code == messages.PROVE_ADDRESS and cookie is not None:
            self._cookie = cookie
            if not self._challenged:
                # Echo it at once; a second challenge in a row waits for
                # the next retransmission or refresh.
                self._challenged = True
                self.register(registration.seeking)
            return
        self.log.error(
            "The stage manager refused the registration of {name}: {code} {reason}",
            name=self.name,
            code=code,
            reason=reason,
        )

    # Datagrams

    def datagramReceived(self, datagram, address):
        if (
            isinstance(self.punch, OriginalContact)
            and seedprotocol.isText(datagram)
            and self.punch.handleText(datagram, address)
        ):
            return
        if (
            self._key is not None
            and address == self.server
            and not stun.verifyIntegritySHA256(datagram, self._key)
        ):
            self.drops.drop(
                "unauthenticated", formatAddress(address), "no valid MESSAGE-INTEGRITY-SHA256"
            )
            return
        try:
            message = stun.decode(datagram)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
            return
        if self.natProbe is not None and self.natProbe.handle(message, address):
            return
        try:
            if address == self.server and self._fromServer(message, address):
                return
            if self.punch is not None and self.punch.handle(datagram, message, address):
                return
        except messages.InvalidMessage as e:
            self.drops.drop("invalid", formatAddress(address), e.reason)
            return
        self.drops.drop(
            "unexpected or unauthenticated",
            formatAddress(address),
            f"method {message.method:#05x} class {message.messageClass}",
        )

    def _fromServer(self, message, address):
        kind = (message.method, message.messageClass)
        if kind == (messages.REGISTER, stun.SUCCESS):
            registration = self._answered(message)
            if registration is not None:
                self._registered(message, registration)
                return True
        elif kind == (messages.REGISTER, stun.ERROR):
            registration = self._answered(message)
            if registration is not None:
                self._refused(message, registration)
                return True
        elif kind == (messages.INTRODUCE, stun.REQUEST):
            introduction = messages.parseIntroduction(message)
            self._toServer(messages.encodeSuccess(messages.INTRODUCE, message.transactionID))
            self._introduced(introduction)
            if self._proof is not None and self._proof.active():
                self._proof.cancel()
                self.register()
            return True
        elif kind == (messages.UNREGISTER, stun.SUCCESS):
            return True
        return False

    def _usable(self, address):
        return (":" in address[0]) == self._ipv6

    def _introduced(self, introduction):
        if introduction.original:
            self._introducedOriginal(introduction)
            return
        if self.punch is not None and self.punch.key == introduction.key:
            return
        if introduction.name != self.wants:
            raise messages.InvalidMessage(
                f"introduced to {introduction.name}, but looking for {self.wants}"
            )
        if self.punch is not None:
            self.punch.stop()
        self.log.info(
            "The stage manager introduced {peer}: public address {address},"
            " local addresses {localAddresses}. Punching.",
            peer=introduction.name,
            address=formatAddress(introduction.address),
            localAddresses=", ".join(map(formatAddress, introduction.localAddresses))
            or "none",
        )
        usable = messages.Introduction(
            introduction.name,
            introduction.address,
            tuple(filter(self._usable, introduction.localAddresses)),
            introduction.key,
        )
        self.punch = Punch(
            self.clock,
            self.transport.write,
            self.name,
            usable,
            self.text,
            self,
            newTransactionID=self._newTransactionID,
            **self._punchSettings,
        )
        self.punch.start()

    def _introducedOriginal(self, introduction):
        current = self.punch
        if (
            isinstance(current, OriginalContact)
            and current.address == introduction.address
            and current.state in (PUNCHING, UP)
        ):
            return
        if introduction.name != self.wants:
            raise messages.InvalidMessage(
                f"introduced to {introduction.name}, but looking for {self.wants}"
            )
        if current is not None:
            current.stop()
        self.log.info(
            "The stage manager introduced {peer} at {address}, an original"
            " test-client: speaking its text messages to it",
            peer=introduction.name,
            address=formatAddress(introduction.address),
        )
        settings = self._punchSettings
        self.punch = OriginalContact(
            self.clock,
            self.transport.write,
            self.name,
            introduction.name,
            introduction.address,
            self.text,
            self,
            messageInterval=settings.get("messageInterval", 1.0),
            pathTimeout=settings.get("pathTimeout", 15.0),
        )
        self.punch.start()

    # What the punch tells us

    def pathUp(self, punch):
        self.log.info(
            "Direct path to {peer} is up via {address}: round trip {rtt:.1f} ms,"
            " {elapsed:.0f} ms after the introduction, {probes} probe(s) sent",
            peer=punch.peerName,
            address=repr(punch.selected),
            rtt=punch.rtt * 1000,
            elapsed=punch.elapsed * 1000,
            probes=punch.probesSent,
        )

    def punchFailed(self, punch):
        self.log.warn(
            "Could not reach {peer}: none of its addresses ({candidates}) answered"
            " within {seconds:.1f} s, after {probes} probe(s). Both NATs may filter"
            " what the other sends, or give a new port per destination (a"
            " symmetric NAT). Trying again at the next introduction.",
            peer=punch.peerName,
            candidates=", ".join(map(repr, punch.candidates)),
            seconds=punch.elapsed,
            probes=punch.probesSent,
        )

    def pathLost(self, punch):
        self.log.warn(
            "Lost the direct path to {peer} at {address}: nothing heard for"
            " {seconds:.0f} s. Asking the stage manager for a new introduction.",
            peer=punch.peerName,
            address=formatAddress(punch.selected.address),
            seconds=self.clock.seconds() - punch.lastHeard,
        )
        self.register()

    def messageReceived(self, punch, text, source):
        self.received.append((text, source))
        self.log.info(
            "We received a peer message of len {length} from {host},{port} ->> {text}",
            length=len(text.encode("utf-8")),
            host=source[0],
            port=source[1],
            text=_printable(text),
        )
