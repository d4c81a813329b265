"""
A peer's registration with the stage manager: the request, its
retransmission, the cookie that proves the peer's address, the name's
secret, and what the answers say.
"""

import random as _random
from itertools import islice

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from punchd import messages, stun
from punchd.addresses import formatAddress
from punchd.transactions import Transactions, TransactionTimeout, backoff

#: Seconds before the first retransmission of an unanswered registration;
#: each later one waits twice as long, up to the refresh interval.
REGISTRATION_RTO = 0.5

#: After this many unanswered transmissions of one registration, the peer
#: says plainly that the stage manager is not answering.
NOT_ANSWERING_AFTER = 5

#: After this many unanswered transmissions of one registration (3.5 s, at
#: the next retransmission), a peer that knows more than one stage manager
#: moves to the next.
MOVE_AFTER = 3

#: Each refresh interval and retransmission delay is moved at random by up
#: to this share of itself either way, so that many peers behind one NAT,
#: started together, do not register in lockstep.
JITTER = 0.1

#: The retransmissions of an unanswered refresh: after the last, the peer
#: registers in full, which goes on trying (and moving) as registrations do.
REFRESH_RETRIES = (0.5, 1.0)

#: Seconds before a refresh handle runs out that the peer stops using it,
#: so that a refresh in flight does not arrive after it.
HANDLE_MARGIN = 5.0


class Registrar:
    """
    Register a peer with the stage manager at start and every C{interval}
    seconds, retransmitting an unanswered registration with backoff.

    @ivar publicAddress: The peer's address as the stage manager saw it, or
        L{None} before the first answer.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        send,
        server,
        name: str,
        wants: tuple,
        localAddresses,
        localPort: int,
        seeking,
        interval: float = 20.0,
        newTransactionID=stun.newTransactionID,
        jitter: float = JITTER,
        random=_random.random,
        clearNames=None,
        fallbacks=(),
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of a datagram and a stage manager's
            C{(host, port)} that sends it there.
        @param server: The stage manager's C{(host, port)}.
        @param name: The peer's name.
        @param wants: The names of its contacts, a L{tuple}.
        @param localAddresses: Its C{(host, port)}s on its own network.
        @param localPort: Its socket's port.
        @param seeking: A function returning the contacts the peer seeks an
            introduction to now, in the order of C{wants}.
        @param interval: Seconds between registrations, on average.
        @param jitter: The share of each interval and retransmission delay
            by which it is moved at random either way.
        @param random: A function returning a float in [0, 1), for the
            jitter.
        @param clearNames: The C{(name, wants)} the log shows, when C{name}
            and C{wants} are names derived from a peer secret (see
            L{punchd.identity}).
        @param fallbacks: The C{(host, port)}s of more stage managers: when
            the one registered with stops answering, the peer moves to the
            next, and from the last back to the first.
        """
        self.clock = clock
        self.server = server
        self.servers = (server, *fallbacks)
        self.name = name
        self.wants = tuple(wants)
        self.localAddresses = tuple(localAddresses)
        self.interval = interval
        self.publicAddress = None
        #: How the peer's NAT maps and filters, which every full
        #: registration reports, once known (see L{setNAT}).
        self.nat = None
        #: The NAT behaviour that the last answered registration reported.
        self.natRegistered = None
        clearName, clearWants = (name, wants) if clearNames is None else clearNames
        self._clearName = clearName
        self._clearWants = dict(zip(self.wants, clearWants))
        self._send = send
        self._localPort = localPort
        self._seeking = seeking
        self._newTransactionID = newTransactionID
        self._transactions = Transactions(clock, send)
        self._jitter = jitter
        self._random = random
        self._refresher = None
        self._inFlight = None
        self._firstAttemptAt = None
        self._serverSilent = False
        self._peerStates = {}
        self._cookie = None
        self._secret = None
        self._previousSecret = None
        self._challenged = False
        self._natPending = False
        # The refresh handle of the last registration, and what it stands
        # for: see _refreshable.
        self._handle = None
        self._handleKey = None
        self._handleUntil = 0.0
        self._handleFor = None
        self._counter = 0

    @property
    def secret(self) -> "bytes | None":
        """
        The secret of this peer's name as it stands: the
        L{messages.NAME_SECRET} the stage manager gave it, or the last
        L{messages.nextSecret} of it; L{None} before the stage manager gave
        one.
        """
        return self._secret

    @property
    def secrets(self) -> tuple:
        """
        The secrets an introduction may be signed with
        (L{messages.introductionKey}): the current one and the one it
        replaced, while the stage manager may still sign with that.
        """
        return tuple(s for s in (self._secret, self._previousSecret) if s is not None)

    def start(self):
        """
        Register now and every C{interval} seconds, give or take the
        jitter.
        """
        self._refresh()

    def stop(self):
        """
        Stop: no timer remains.
        """
        if self._refresher is not None and self._refresher.active():
            self._refresher.cancel()
        self._refresher = None
        self._transactions.withdrawAll()

    def leave(self):
        """
        Tell the stage manager to forget this peer, if it registered.

        Fire and forget: a lost goodbye only means the entry expires.
        """
        if self.publicAddress is not None:
            self._send(
                messages.encodeUnregister(self._newTransactionID(), self.name, self._secret),
                self.server,
            )
            self.log.info("Told the stage manager to forget {name}", name=self.name)

    def _jittered(self, delay: float) -> float:
        return delay * (1 + self._jitter * (2 * self._random() - 1))

    def _refresh(self):
        self._refresher = self.clock.callLater(self._jittered(self.interval), self._refresh)
        if self._inFlight is None:
            if self._refreshable():
                self._sendRefresh()
            else:
                self.register()

    def _refreshable(self) -> bool:
        """
        Whether a compact refresh does: the last registration gave a handle
        still good, nothing it said has changed since, and the peer seeks
        no introduction, which only a full registration asks for.
        """
        return (
            self._handle is not None
            and self.clock.seconds() < self._handleUntil - HANDLE_MARGIN
            and self._handleFor == (self.server, self.wants, self.localAddresses)
            and not self._seeking()
        )

    def _sendRefresh(self):
        txid = self._newTransactionID()
        self._counter += 1
        datagram = messages.encodeRefresh(txid, self._handle, self._counter, self._handleKey)
        self._inFlight = txid
        self._firstAttemptAt = self.clock.seconds()
        d = self._transactions.request(txid, datagram, self.server, REFRESH_RETRIES)
        d.addCallbacks(self._refreshAnswered, self._refreshFailed)

    def _refreshAnswered(self, taken):
        self._inFlight = None
        if not taken:
            # The stage manager does not know the handle, or not from
            # here: a full registration says everything again.
            self._handle = None
            self.register()

    def _refreshFailed(self, failure):
        failure.trap(TransactionTimeout, CancelledError)
        if failure.check(TransactionTimeout):
            self._inFlight = None
            self._handle = None
            self.register()

    def setNAT(self, nat):
        """
        Report how the peer's NAT maps and filters in every full
        registration from now on, and register at once if it changed, so
        that the stage manager can tell the contacts in their
        introductions.  Compact refreshes do not carry it: the stage
        manager keeps what the last full registration said.

        @param nat: A C{(mapping, filtering)} pair of L{punchd.natprobe}
            behaviours.
        """
        if nat == self.nat:
            return
        self.nat = nat
        if self._refresher is None:
            return
        if self._secret is None and self._inFlight is not None:
            # The registration in flight may be the one the name's secret
            # is given to, its answer lost: a new one could not prove the
            # name, and would be refused it.  It goes once that is answered.
            self._natPending = True
            return
        self.register()

    def register(self, seeking: "tuple | None" = None):
        """
        Register now, replacing any registration still unanswered.

        A registration smaller than L{messages.UNPROVEN_REGISTRATION_BYTES}
        is padded to it, so that the stage manager can answer it with a
        cookie challenge, should its cookie be missing or stale, without
        sending more than it received.

        @param seeking: The contacts to ask for an introduction to; by
            default, those the peer has no direct path to and is not
            punching.
        """
        if self._inFlight is not None:
            self._transactions.withdraw(self._inFlight)
        # The answer gives a new handle; until then, none.
        self._handle = None
        txid = self._newTransactionID()
        registration = messages.Registration(
            self.name,
            self.wants,
            self.localAddresses,
            self._seeking() if seeking is None else seeking,
            self._cookie,
            self.nat,
        )
        # The secret itself is never sent: the MESSAGE-INTEGRITY proves
        # that we hold it.
        secret = self._secret
        datagram = messages.encodeRegistration(
            txid,
            registration,
            messages.UNPROVEN_REGISTRATION_BYTES,
            None if secret is None else messages.registrationKey(secret),
        )
        self._inFlight = txid
        self._firstAttemptAt = self.clock.seconds()
        d = self._transactions.request(
            txid,
            datagram,
            self.server,
            backoff(REGISTRATION_RTO, self.interval, self._jitter, self._random),
            sent=self._attempted,
        )
        d.addCallbacks(self._answered, self._withdrawn, callbackArgs=(registration, secret))

    def _withdrawn(self, failure):
        failure.trap(CancelledError)

    def _attempted(self, attempts):
        if attempts == MOVE_AFTER + 1 and len(self.servers) > 1:
            self._move(attempts)
        elif attempts == NOT_ANSWERING_AFTER and not self._serverSilent:
            self._serverSilent = True
            self.log.warn(
                "The stage manager at {server} is not answering: {attempts} tries"
                " over {seconds:.1f} s went unanswered. Is it running, and can UDP"
                " reach port {port} from here? Still trying.",
                server=formatAddress(self.server),
                attempts=attempts,
                seconds=self.clock.seconds() - self._firstAttemptAt,
                port=self.server[1],
            )

    def _move(self, attempts):
        """
        Register with the next stage manager, the current one having
        stopped answering.  The cookie and the name's secret go along: a
        stage manager that shares the phonebook and the cookie key with
        this one takes them; another challenges the cookie and gives the
        name a secret of its own.
        """
        previous = self.server
        self.server = self.servers[(self.servers.index(previous) + 1) % len(self.servers)]
        self.log.warn(
            "The stage manager at {previous} is not answering: {attempts} tries over"
            " {seconds:.1f} s went unanswered. Registering with {server} instead.",
            previous=formatAddress(previous),
            attempts=attempts - 1,
            seconds=self.clock.seconds() - self._firstAttemptAt,
            server=formatAddress(self.server),
        )
        # From within the retransmission of the request it replaces.
        self.clock.callLater(0, self.register)

    def handle(self, message: stun.Message) -> bool:
        """
        Take a message from the stage manager that may answer a
        registration.

        @return: Whether it did.
        @raise messages.InvalidMessage: If it did, but breaks a rule.
        """
        if message.method == messages.UNREGISTER:
            return message.messageClass == stun.SUCCESS
        if message.method == messages.REFRESH:
            if message.messageClass not in (stun.SUCCESS, stun.ERROR):
                return False
            return self._transactions.answer(
                message.transactionID, message.messageClass == stun.SUCCESS
            )
        if message.method != messages.REGISTER or message.transactionID not in self._transactions:
            return False
        if message.messageClass == stun.SUCCESS:
            # Read before it counts as the answer: one that breaks a rule
            # leaves the registration in flight.
            answer = messages.parseRegistered(message)
        elif message.messageClass == stun.ERROR:
            answer = message
        else:
            return False
        return self._transactions.answer(message.transactionID, answer)

    def _answered(self, answer, registration, secret):
        self._inFlight = None
        if self._serverSilent:
            self._serverSilent = False
            self.log.info(
                "The stage manager at {server} is answering again",
                server=formatAddress(self.server),
            )
        if isinstance(answer, messages.Registered):
            self._registered(answer, registration, secret)
        else:
            self._refused(answer, registration)

    def _registered(self, answer, registration, secret):
        """
        @param secret: The secret the registration proved it holds, or
            L{None}.
        """
        self._challenged = False
        self._cookie = answer.cookie
        self.natRegistered = registration.nat
        if self._natPending:
            self._natPending = False
            if registration.nat != self.nat:
                self.clock.callLater(0, self.register)
        if answer.secret is not None:
            # The name is new to the stage manager (or it forgot it).
            self._secret, self._previousSecret = answer.secret, None
        elif answer.nonce is not None and secret is not None:
            # Made from the secret this registration proved, not from the
            # one we hold now, as the stage manager made it.
            self._secret = messages.nextSecret(secret, answer.nonce)
            self._previousSecret = secret
        if answer.handle is not None and self._secret is not None:
            self._handle = answer.handle
            self._handleKey = messages.refreshKey(self._secret)
            self._handleUntil = self.clock.seconds() + answer.handleLifetime
            self._handleFor = (self.server, self.wants, self.localAddresses)
            self._counter = 0
        if answer.observed != self.publicAddress:
            self._addressLearned(answer)
        states = dict(zip(registration.seeking, answer.peerStates))
        for wanted in self.wants:
            state = states.get(wanted)
            if self._peerStates.get(wanted) != state:
                self._peerStates[wanted] = state
                if state == messages.PEER_WAITING:
                    self.log.info(
                        "Waiting for {wants} to register and look for {name}",
                        wants=self._clearWants[wanted],
                        name=self._clearName,
                    )

    def _addressLearned(self, answer):
        if self.publicAddress is None:
            self.log.info(
                "Registered with the stage manager as {name}. My public address"
                " is {address}{portNote}.",
                name=self._clearName,
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

    def _portNote(self, observed):
        port = self._localPort
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
            name=self._clearName,
            code=code,
            reason=reason,
        )


class SecondFamily:
    """
    Tell the stage manager a dual-stack peer's public address of its other
    family: a registration carrying L{messages.SECOND_FAMILY}, sent to the
    stage manager's address of that family, and again every C{interval}
    seconds (jittered), so that introductions carry it.  It proves the name
    with its secret and the address with a cookie of its own, and changes
    nothing else of the entry.  The first, sent at L{start} alongside the
    first registration, only fetches the cookie; the proven one follows as
    soon as the name has its secret (L{registered}), one round trip later
    rather than two.

    @ivar publicAddress: The peer's address of that family as the stage
        manager saw it, or L{None} before the first answer.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        send,
        server,
        registrar: Registrar,
        interval: float = 20.0,
        newTransactionID=stun.newTransactionID,
        jitter: float = JITTER,
        random=_random.random,
    ):
        """
        @param send: A function of a datagram and an address that sends it.
        @param server: The stage manager's C{(host, port)} of the other
            family.
        @param registrar: The peer's L{Registrar}, whose name and secret
            this proves.
        """
        self.clock = clock
        self.server = server
        self.publicAddress = None
        self._registrar = registrar
        self._interval = interval
        self._newTransactionID = newTransactionID
        self._jitter = jitter
        self._random = random
        self._transactions = Transactions(clock, send)
        self._cookie = None
        self._inFlight = None
        self._next = None
        self._challenged = False
        self._refusal = None

    def start(self):
        """
        Ask for the cookie now, while the first registration asks for its
        own.
        """
        self.register()

    def registered(self):
        """
        The registration was answered: register the other family now if the
        name has its secret and the stage manager has not yet taken it.
        """
        if self.publicAddress is None and self._inFlight is None and self._registrar.secret is not None:
            self.register()

    def register(self):
        """
        Register the other family now, replacing one still unanswered.
        """
        if self._inFlight is not None:
            self._transactions.withdraw(self._inFlight)
        if self._next is not None and self._next.active():
            self._next.cancel()
        delay = self._interval * (1 + self._jitter * (2 * self._random() - 1))
        self._next = self.clock.callLater(delay, self.register)
        secret = self._registrar.secret
        if secret is None and self._cookie is not None:
            # Nothing to prove the name with yet: registered() goes on.
            return
        txid = self._newTransactionID()
        datagram = messages.encodeRegistration(
            txid,
            messages.Registration(self._registrar.name, cookie=self._cookie, secondFamily=True),
            messages.UNPROVEN_REGISTRATION_BYTES,
            None if secret is None else messages.registrationKey(secret),
        )
        self._inFlight = txid
        d = self._transactions.request(
            txid,
            datagram,
            self.server,
            # Four tries; the next interval tries again.
            tuple(islice(backoff(REGISTRATION_RTO, self._interval / 2, self._jitter, self._random), 4)),
        )
        d.addCallbacks(self._answered, self._unanswered)

    def stop(self):
        """
        Stop: no timer of it remains.
        """
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._transactions.withdrawAll()

    def handle(self, message: stun.Message) -> bool:
        """
        Take a message from the stage manager's address of the other family.

        @return: Whether it answered the registration in flight.
        @raise messages.InvalidMessage: If it did, but breaks a rule.
        """
        if message.method != messages.REGISTER or message.transactionID not in self._transactions:
            return False
        if message.messageClass == stun.SUCCESS:
            answer = messages.parseRegistered(message)
        elif message.messageClass == stun.ERROR:
            answer = message
        else:
            return False
        return self._transactions.answer(message.transactionID, answer)

    def _unanswered(self, failure):
        failure.trap(CancelledError, TransactionTimeout)
        self._inFlight = None

    def _answered(self, answer):
        self._inFlight = None
        if isinstance(answer, messages.Registered):
            self._challenged = False
            self._refusal = None
            self._cookie = answer.cookie
            if answer.observed != self.publicAddress:
                self.publicAddress = answer.observed
                self.log.info(
                    "My public {family} address, as the stage manager saw it: {address}",
                    family="IPv6" if ":" in answer.observed[0] else "IPv4",
                    address=formatAddress(answer.observed),
                )
            return
        value = answer.get(stun.ERROR_CODE)
        try:
            code, reason = stun.decodeErrorCode(value) if value else (0, "no reason")
        except stun.StunError:
            code, reason = 0, "unreadable reason"
        cookie = answer.get(messages.COOKIE)
        if code == messages.PROVE_ADDRESS and cookie is not None:
            self._cookie = cookie
            if not self._challenged and self._registrar.secret is not None:
                self._challenged = True
                self.register()
            return
        if (code, reason) != self._refusal:
            # Said once, not at every interval while it lasts.
            self._refusal = (code, reason)
            self.log.warn(
                "The stage manager at {server} did not take our address of this family:"
                " {code} {reason}. Going on with the other.",
                server=formatAddress(self.server),
                code=code,
                reason=reason,
            )
