"""
The client side of NAT behaviour discovery (RFC 5780): how does the NAT in
front of this socket map and filter, and what does that mean for hole
punching?

The tests run from the peer's own socket against a stage manager started
with C{--alternate-port} and C{--alternate-address}:

  1. A Binding request to the primary address: the public mapping, and the
     server's other address.
  2. Filtering, before anything else is sent anywhere: a request asking to
     be answered from the other address and port, and one asking for the
     other port only.  Whichever answers get in say how the NAT filters.
     At the same time, hairpinning: a request to our own public mapping.
     Does it come back?  These wait a few round trips of the first request
     for their answers (L{filteringSchedule}), not the whole schedule of
     the others: a NAT that filters lets none in.
  3. Mapping: requests to the other address, then to the other address and
     port.  Whether the mapping changes says how the NAT maps.
"""

from collections import Counter
from dataclasses import dataclass

from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from punchd import stun
from punchd.addresses import formatAddress
from punchd.drops import DropCounter
from punchd.transactions import Transactions, TransactionTimeout

ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"

#: Seconds to wait for an answer before each retransmission; the last
#: number is how long to wait after the last one.
RETRIES = (0.3, 0.6, 0.9)

#: The filtering tests wait for answers that a filtering NAT never lets in,
#: so they wait as long as an answer could take, not longer: this many
#: times the round trip of the first request (each step no longer than in
#: L{RETRIES}), and never less than L{FILTERING_FLOOR} seconds.
FILTERING_ROUND_TRIPS = 3
FILTERING_FLOOR = 0.1

_MAPPING_WORDS = {
    ENDPOINT_INDEPENDENT: "keeps one public address and port for every destination",
    ADDRESS_DEPENDENT: "gives a new public port for each destination address",
    ADDRESS_AND_PORT_DEPENDENT: "gives a new public port for each destination address and port",
}
_FILTERING_WORDS = {
    ENDPOINT_INDEPENDENT: "lets in datagrams from anyone, once a mapping exists",
    ADDRESS_DEPENDENT: "lets in datagrams only from addresses it has sent to, from any of their ports",
    ADDRESS_AND_PORT_DEPENDENT: "lets in datagrams only from the exact addresses and ports it has sent to",
}


def filteringSchedule(retries, roundTrip: float) -> tuple:
    """
    How the filtering tests retransmit: each step of C{retries}, but no
    longer than L{FILTERING_ROUND_TRIPS} round trips (at least
    L{FILTERING_FLOOR} seconds).  An answer a NAT lets in comes within a
    round trip, as the first one did; waiting the whole of C{retries} for
    one it does not let in cost a second of every peer's start.

    @param retries: The schedule of every other request.
    @param roundTrip: Seconds the first request took to be answered,
        retransmissions included.
    """
    step = max(FILTERING_FLOOR, FILTERING_ROUND_TRIPS * roundTrip)
    return tuple(min(each, step) for each in retries)


class ProbeError(Exception):
    """
    The NAT's behaviour cannot be told: the reason is in the message.
    """


class _Unusable(Exception):
    """
    A datagram that matches one of the probe's requests but cannot be used
    as its answer.

    @ivar reason: The short, fixed reason it is dropped for.
    @ivar detail: What exactly is wrong with it.
    """

    def __init__(self, reason, detail):
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def _readAnswer(message):
    """
    Read an answer from the stage manager to a Binding request.

    @return: The C{XOR-MAPPED-ADDRESS}, and the C{OTHER-ADDRESS} or
        L{None}.
    @raise _Unusable: If it is not a Binding success response with those
        attributes well formed.
    """
    if message.method != stun.BINDING or message.messageClass not in (stun.SUCCESS, stun.ERROR):
        raise _Unusable(
            "malformed answer",
            f"method {message.method:#05x} class {message.messageClass} is not a Binding answer",
        )
    if message.messageClass == stun.ERROR:
        try:
            code, text = stun.decodeErrorCode(message.get(stun.ERROR_CODE) or b"")
        except stun.StunError as e:
            raise _Unusable("malformed answer", f"bad ERROR-CODE: {e}") from None
        raise _Unusable("error answer", f"error {code} {text}")
    mapped = message.get(stun.XOR_MAPPED_ADDRESS)
    if mapped is None:
        raise _Unusable("malformed answer", "no XOR-MAPPED-ADDRESS")
    other = message.get(stun.OTHER_ADDRESS)
    try:
        mapped = stun.decodeXorAddress(mapped, message.transactionID)
    except stun.StunError as e:
        raise _Unusable("malformed answer", f"bad XOR-MAPPED-ADDRESS: {e}") from None
    try:
        other = None if other is None else stun.decodeAddress(other)
    except stun.StunError as e:
        raise _Unusable("malformed answer", f"bad OTHER-ADDRESS: {e}") from None
    return mapped, other


def _readHairpin(message):
    """
    Read what comes back of a Binding request sent to our own mapping: the
    request itself, if the NAT hairpins.

    @raise _Unusable: If it is anything else.
    """
    if (message.method, message.messageClass) != (stun.BINDING, stun.REQUEST):
        raise _Unusable(
            "malformed answer",
            f"method {message.method:#05x} class {message.messageClass}"
            " is not the hairpinned Binding request",
        )
    return True


@dataclass(frozen=True)
class NATBehaviour:
    """
    What the tests found.

    @ivar localPort: The port of the socket the tests ran from.
    @ivar mapped: The public C{(host, port)} the stage manager saw.
    @ivar behindNAT: Whether C{mapped} differs from every local address.
    @ivar mapping: L{ENDPOINT_INDEPENDENT}, L{ADDRESS_DEPENDENT} or
        L{ADDRESS_AND_PORT_DEPENDENT}.
    @ivar filtering: The same three.
    @ivar hairpinning: Whether a datagram to our own mapping came back;
        L{None} where there is no NAT.
    """

    localPort: int
    mapped: tuple
    behindNAT: bool
    mapping: str
    filtering: str
    hairpinning: "bool | None"

    @property
    def portPreserved(self) -> bool:
        return self.mapped[1] == self.localPort

    @property
    def kind(self) -> str:
        """
        The classic name for this behaviour.
        """
        if not self.behindNAT:
            if self.filtering == ENDPOINT_INDEPENDENT:
                return "no NAT"
            return "no NAT, but a firewall"
        if self.mapping != ENDPOINT_INDEPENDENT:
            return "symmetric NAT"
        return {
            ENDPOINT_INDEPENDENT: "full cone NAT",
            ADDRESS_DEPENDENT: "restricted cone NAT",
            ADDRESS_AND_PORT_DEPENDENT: "port-restricted cone NAT",
        }[self.filtering]

    def verdict(self) -> str:
        """
        One line: the kind of NAT and its behaviour in RFC 4787's terms.
        """
        hairpin = {True: "hairpins", False: "does not hairpin", None: "no hairpinning to test"}
        return (
            f"{self.kind} at {formatAddress(self.mapped)}: {self.mapping} mapping,"
            f" {self.filtering} filtering, port {'preserved' if self.portPreserved else 'changed'},"
            f" {hairpin[self.hairpinning]}"
        )

    def explain(self):
        """
        The report in plain words, a sentence a line.

        @rtype: L{list} of L{str}
        """
        if not self.behindNAT:
            lines = [
                f"There is no NAT in front of this socket: the stage manager saw"
                f" it at its own address, {formatAddress(self.mapped)}."
            ]
        else:
            lines = [
                f"This socket's public address is {formatAddress(self.mapped)}.",
                f"The NAT {_MAPPING_WORDS[self.mapping]} ({self.mapping} mapping).",
                "It kept the local port {}.".format(self.localPort)
                if self.portPreserved
                else f"It changed the local port {self.localPort} to {self.mapped[1]}.",
            ]
        if self.behindNAT:
            lines.append(f"The NAT {_FILTERING_WORDS[self.filtering]} ({self.filtering} filtering).")
        elif self.filtering == ENDPOINT_INDEPENDENT:
            lines.append("Nothing in front of it filters what comes in.")
        else:
            lines.append(
                f"A firewall in front of it {_FILTERING_WORDS[self.filtering]}"
                f" ({self.filtering} filtering)."
            )
        if self.hairpinning is not None:
            lines.append(
                "It hairpins: peers behind it can reach each other at their public addresses."
                if self.hairpinning
                else "It does not hairpin: peers behind it must reach each other at their"
                " local addresses, which punchd tries first."
            )
        lines.append(f"In short: {'' if self.kind.startswith('no ') else 'a '}{self.kind}.")
        lines.append(self.punchingOutlook())
        return lines

    def punchingOutlook(self) -> str:
        """
        What this behaviour means for hole punching with other NATs.
        """
        if self.mapping == ENDPOINT_INDEPENDENT:
            if self.filtering == ADDRESS_AND_PORT_DEPENDENT:
                return (
                    "Hole punching works with a peer behind any NAT that keeps one mapping"
                    " for every destination (full, restricted or port-restricted cone),"
                    " but not with a symmetric NAT."
                )
            return (
                "Hole punching works with a peer behind any NAT, symmetric NATs included:"
                " a symmetric NAT's new port is learned from its peer's first probe."
            )
        return (
            "Hole punching works only with a peer behind no NAT, a full cone or a"
            " restricted cone NAT, which lets in this NAT's new port for it; not with a"
            " port-restricted cone or another symmetric NAT."
        )


class NATProbe:
    """
    Runs the tests from one socket.

    Feed it every datagram the socket receives through L{handle}; it takes
    the ones that answer its requests.

    @ivar drops: The L{DropCounter} of answers it could not use.
    """

    def __init__(
        self, clock, send, server, localPort, localHosts=(), retries=RETRIES, drops=None
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends from
            the socket.
        @param server: The stage manager's primary C{(host, port)}.
        @param localPort: The socket's port.
        @param localHosts: This machine's addresses, to tell whether there
            is a NAT at all.
        @param retries: Seconds between transmissions of a request, and how
            long to wait after the last.
        @param drops: The L{DropCounter} that counts answers the probe
            cannot use; by default one of its own.
        """
        self.clock = clock
        self.server = server
        self.localPort = localPort
        self.localHosts = tuple(localHosts)
        self._retries = retries
        self.drops = DropCounter(clock) if drops is None else drops
        self._transactions = Transactions(clock, send)
        # What reads the answer of each request in flight, by transaction ID.
        self._readers = {}
        self._cancelled = False
        self._dropped = Counter()
        self._firstDropped = None

    def handle(self, message: stun.Message, source) -> bool:
        """
        Take a datagram the socket received.

        A datagram that matches a request but cannot be its answer (a
        malformed or error response, which anyone who saw the request could
        forge) is counted as dropped, and the request waits on for a good
        answer.

        @return: L{True} if it answered one of the probe's requests, or was
            the probe's own request coming back through the NAT, whether or
            not it could be used.
        """
        read = self._readers.get(message.transactionID)
        if read is None:
            return False
        try:
            answer = read(message)
        except _Unusable as e:
            self._dropped[e.reason] += 1
            if self._firstDropped is None:
                self._firstDropped = f"the first from {formatAddress(source)}: {e.detail}"
            self.drops.drop(e.reason, formatAddress(source), e.detail)
            return True
        self._transactions.answer(message.transactionID, answer)
        return True

    def _noAnswer(self, what):
        """
        The reason the probe ends for a request without an answer: C{what},
        and the answers dropped, if any.
        """
        if not self._dropped:
            return what
        counts = " and ".join(
            f"{n} {reason}{'' if n == 1 else 's'}" for reason, n in sorted(self._dropped.items())
        )
        return f"{what}, but for {counts} that the probe dropped, {self._firstDropped}"

    def _transact(
        self, destination, changeIP=False, changePort=False, read=_readAnswer, retries=None
    ):
        if self._cancelled:
            raise ProbeError("the probe was stopped")
        txid = stun.newTransactionID()
        attributes = ()
        if changeIP or changePort:
            attributes = ((stun.CHANGE_REQUEST, stun.encodeChangeRequest(changeIP, changePort)),)
        datagram = stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid, attributes))
        self._readers[txid] = read
        d = self._transactions.request(
            txid, datagram, destination, self._retries if retries is None else retries
        )
        d.addBoth(self._done, txid)
        d.addErrback(self._unanswered)
        return d

    @staticmethod
    def _unanswered(failure):
        # Timed out or stopped: no answer, which run() tells apart.
        failure.trap(TransactionTimeout, defer.CancelledError)
        return None

    def _done(self, result, txid):
        del self._readers[txid]
        return result

    def cancel(self):
        """
        Stop: no timer of the probe remains, and L{run} fails with
        L{ProbeError} without sending anything more.
        """
        self._cancelled = True
        self._transactions.withdrawAll()

    @defer.inlineCallbacks
    def run(self):
        """
        Run the tests.

        @return: A L{defer.Deferred} that fires with a L{NATBehaviour}, or
            fails with L{ProbeError} saying why the behaviour cannot be
            told.
        """
        sentAt = self.clock.seconds()
        first = yield self._transact(self.server)
        roundTrip = self.clock.seconds() - sentAt
        if self._cancelled:
            raise ProbeError("the probe was stopped")
        if first is None:
            raise ProbeError(
                self._noAnswer(f"the stage manager at {formatAddress(self.server)} did not answer")
            )
        mapped, other = first
        if other is None:
            raise ProbeError(
                f"the stage manager at {formatAddress(self.server)} does not offer NAT"
                " behaviour discovery (it needs --alternate-port and --alternate-address)"
            )
        if other[0] == self.server[0]:
            raise ProbeError(
                f"the stage manager at {formatAddress(self.server)} has an alternate port"
                " but no alternate address (--alternate-address), so only half the"
                " tests can run"
            )
        behindNAT = not (mapped[1] == self.localPort and mapped[0] in self.localHosts)

        # Filtering first, since the mapping tests would open the NAT to the
        # other address; the two filtering tests and the hairpinning test
        # run at once, since none of them sends to where another's answer
        # comes from.
        wait = filteringSchedule(self._retries, roundTrip)
        changeBoth, changePort, hairpin = yield defer.gatherResults(
            [
                self._transact(self.server, changeIP=True, changePort=True, retries=wait),
                self._transact(self.server, changePort=True, retries=wait),
                self._transact(mapped, read=_readHairpin, retries=wait)
                if behindNAT
                else defer.succeed(None),
            ]
        )
        if changeBoth is not None:
            filtering = ENDPOINT_INDEPENDENT
        elif changePort is not None:
            filtering = ADDRESS_DEPENDENT
        else:
            filtering = ADDRESS_AND_PORT_DEPENDENT
        hairpinning = (hairpin is not None) if behindNAT else None

        second = yield self._transact((other[0], self.server[1]))
        if second is None:
            raise ProbeError(self._noAnswer(f"no answer from the alternate address {other[0]}"))
        secondMapped = second[0]
        if secondMapped == mapped:
            mapping = ENDPOINT_INDEPENDENT
        else:
            third = yield self._transact(other)
            if third is None:
                raise ProbeError(self._noAnswer(f"no answer from {formatAddress(other)}"))
            mapping = ADDRESS_DEPENDENT if third[0] == secondMapped else ADDRESS_AND_PORT_DEPENDENT
        return NATBehaviour(self.localPort, mapped, behindNAT, mapping, filtering, hairpinning)


class NATReportProtocol(DatagramProtocol):
    """
    C{punch-peer --probe}: run the tests from a socket of its own, log the
    report in plain words, then call C{done}.
    """

    noisy = False
    log = Logger()

    def __init__(self, clock, server, localHosts, done, retries=RETRIES):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param server: The stage manager's C{(host, port)}.
        @param localHosts: This machine's addresses.
        @param done: Called with no arguments once the report is out.
        """
        self.clock = clock
        self.server = server
        self.localHosts = localHosts
        self.done = done
        self.retries = retries
        self.probe = None
        self.behaviour = None

    def startProtocol(self):
        port = self.transport.getHost().port
        self.probe = NATProbe(
            self.clock, self.transport.write, self.server, port, self.localHosts, self.retries
        )
        self.log.info(
            "Asking the stage manager at {server} how the NAT in front of port {port}"
            " behaves...",
            server=formatAddress(self.server),
            port=port,
        )
        self.probe.run().addCallbacks(self._report, self._unknown).addBoth(
            lambda _: self.done()
        )

    def stopProtocol(self):
        self.probe.cancel()

    def datagramReceived(self, datagram, address):
        try:
            message = stun.decode(datagram)
        except stun.StunError:
            return
        self.probe.handle(message, address)

    def _report(self, behaviour):
        self.behaviour = behaviour
        for line in behaviour.explain():
            self.log.info("{line}", line=line)

    def _unknown(self, failure):
        failure.trap(ProbeError)
        self.log.error(
            "Cannot tell how the NAT behaves: {reason}", reason=failure.getErrorMessage()
        )
