"""
Punching a direct path to an introduced peer, and keeping it.

A L{Punch} lives from one introduction to the next.  It has no I/O of its
own: it sends through a function it is given and reads time from the clock it
is given, so it runs the same over a real socket and over
L{punchd.testing}'s simulated network.
"""

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd import frames, messages, stun
from punchd.addresses import formatAddress, udpAddress
from punchd.hardnat import SideSource
from punchd.interfaces import ICandidate, IPath

PUNCHING = "punching"
UP = "up"
FAILED = "failed"
LOST = "lost"
STOPPED = "stopped"

#: Candidate kinds, from most to least preferred: a path inside one network
#: beats one through a NAT, and an address learned from the peer's own probe
#: beats the one its NAT showed the stage manager; any direct path beats one
#: through a TURN relay (L{punchd.relaying}).  A port mapping the peer's
#: router granted (L{punchd.portmap}) lets anyone in, whatever its NAT does:
#: better than the public address, which it may not keep for us.
LOCAL = "local"
PEER_REFLEXIVE = "peer-reflexive"
MAPPED = "mapped"
PUBLIC = "public"
RELAYED = "relayed"
_PRIORITY = {LOCAL: 4, PEER_REFLEXIVE: 3, MAPPED: 2, PUBLIC: 1, RELAYED: 0}

#: The address families, as paths name them.
IPV4 = "IPv4"
IPV6 = "IPv6"

#: Between two direct candidates of one kind and of the two families, the
#: one whose round trip is lower by more than this share, or by more than
#: L{TIE_SECONDS}, is preferred; otherwise it is a tie, and IPv6 is.
TIE_SHARE = 0.1
TIE_SECONDS = 0.002


@implementer(ICandidate)
class Candidate:
    """
    An address the peer may be reached at directly, from this peer's own
    socket.

    @ivar address: C{(host, port)}.
    @ivar kind: L{LOCAL}, L{PEER_REFLEXIVE}, L{MAPPED}, L{PUBLIC} or
        L{RELAYED}.
    """

    __slots__ = ("address", "kind", "_send")

    def __init__(self, address, kind, send):
        """
        @param send: A function of C{(datagram, address)} that sends from
            the socket.
        """
        self.address = address
        self.kind = kind
        self._send = send

    @property
    def priority(self) -> int:
        return _PRIORITY[self.kind]

    @property
    def family(self) -> str:
        """
        C{"IPv4"} or C{"IPv6"}: the family of the address sent to.
        """
        return IPV6 if ":" in self.address[0] else IPV4

    def send(self, datagram: bytes):
        self._send(datagram, self.address)

    def __repr__(self) -> str:
        return f"{formatAddress(self.address)} ({self.kind})"


@implementer(IPath)
class Punch:
    """
    Punch a path to one introduced peer, then keep it alive and prove it.

    While punching it sends an authenticated probe to every candidate it has
    heard from every C{probeInterval} seconds.  An address it was only told
    of may be anyone's, so, as ICE paces its checks and RFC 7675 asks for
    consent, a candidate not yet heard from is probed on a backoff (0, 1, 2,
    4, 8 ... probe intervals after it was first due) and within its even
    share of C{unheardBudget} bytes for the whole introduction: a forged
    introduction or registration cannot make a peer flood its victims.
    Whatever authenticated comes from an address (a probe, an answer, a
    frame) makes it heard, and so does an answer to a probe sent to it.  The
    first answer brings the path up; a better candidate (a local one, say)
    that answers shortly after takes over.  With the path up it sends a
    keepalive every C{keepaliveInterval} seconds, and declares the path lost
    when nothing authenticated has come from the peer for C{pathTimeout}
    seconds: the frames of the application's data count as much as the
    keepalives' answers.

    What an application writes to it goes to the peer in frames
    (L{punchd.frames}), carrying the receiver index the peer put in its
    probes and answers.  A peer whose NAT gives it a new port (a rebinding)
    is heard from the new address, which is probed at once: when it
    answers, and nothing came from the old address in the meantime, the
    path moves there.

    @ivar state: L{PUNCHING}, L{UP}, L{FAILED}, L{LOST} or L{STOPPED}.
    @ivar selected: The L{Candidate} in use while L{UP}.
    @ivar rtt: The last measured round trip to the selected candidate, in
        seconds.
    @ivar candidates: The L{Candidate}s, best first.
    @ivar probesSent: How many probes this punch sent, keepalives excluded.
    @ivar unheardBytesSent: How many bytes of probes this punch sent to
        candidates it had not heard from.
    @ivar index: This side's receiver index for the path, which its probes
        and answers carry and the peer's frames come with.
    @ivar peerIndex: The peer's, from its probes and answers, or L{None}
        before the first.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        send,
        myName: str,
        introduction: messages.Introduction,
        observer,
        punchTimeout: float = 5.0,
        probeInterval: float = 0.05,
        keepaliveInterval: float = 5.0,
        pathTimeout: float = 15.0,
        unheardBudget: int = 4608,
        newTransactionID=stun.newTransactionID,
        wireNames=None,
        index: int = 0,
        relayDelay: float = 1.0,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends.
        @param myName: This peer's name.
        @param introduction: The L{messages.Introduction} of the other peer.
        @param observer: Told what happens: an
            L{punchd.interfaces.IPathObserver} and
            L{punchd.interfaces.IPathReceiver}.
        @param unheardBudget: The most bytes of probes sent, over the whole
            punch, to the introduced candidates not heard from: 4.5 KiB gives
            each of two candidates its full backoff schedule, eight probes
            in the default 5 s, and each of the nine a forged introduction
            can name six probes of 76 bytes, up to 800 ms, still past a server round trip of
            skew between the peers' introductions.
        @param wireNames: The C{(mine, the peer's)} names that probes
            carry and frame keys are derived from, when they are not
            C{myName} and the introduction's: the names derived from a peer
            secret (see L{punchd.identity}), which the log does not show.
        @param index: This side's receiver index for the path: unique among
            the paths on the socket, which find their frames by it.
        @param relayDelay: Seconds after the start before relayed
            candidates (L{addCandidate}) are probed, unless L{relayAtOnce}
            says direct cannot work: direct candidates first, as ICE has it.
        """
        self.clock = clock
        self._relayDelay = relayDelay
        self._relayReason = None
        #: The TURN server relayed candidates are on, for the log.
        self.relayServer = None
        self._send = send
        self.myName = myName
        self.peerName = introduction.name
        self._wireMine, self._wirePeer = (
            (myName, introduction.name) if wireNames is None else wireNames
        )
        self.key = introduction.key
        self._username = messages.username(self._wireMine, self._wirePeer)
        self.index = index
        self.peerIndex = None
        self._writeKey = frames.frameKey(self.key, self._wireMine, self._wirePeer)
        self._writer = None
        self._reader = frames.FrameReader(
            frames.frameKey(self.key, self._wirePeer, self._wireMine)
        )
        self._observer = observer
        self._punchTimeout = punchTimeout
        self._probeInterval = probeInterval
        self._keepaliveInterval = keepaliveInterval
        self._pathTimeout = pathTimeout
        self._newTransactionID = newTransactionID
        self.candidates = []
        for host_port in introduction.localAddresses:
            self._addCandidate(host_port, LOCAL)
        self._addCandidate(introduction.address, PUBLIC)
        if introduction.otherAddress is not None:
            self._addCandidate(introduction.otherAddress, PUBLIC)
        self.state = STOPPED
        self.selected = None
        self.rtt = None
        self.probesSent = 0
        self.unheardBytesSent = 0
        self._heard = set()
        # Addresses the peer spoke from since the selected one last did:
        # where it may have moved.  And when each address the peer spoke
        # from while up was last probed.
        self._strays = set()
        self._checked = {}
        self._unheardRounds = {}
        self._unheardSpent = {}
        self._unheardShare = unheardBudget // len(self.candidates)
        self._probeBytes = len(
            messages.encodeProbe(bytes(12), self.peerName, self.myName, self.key, index)
        )
        self.lastHeard = None
        self._inFlight = {}
        self._startedAt = None
        self._deadline = None
        self._upgradeDeadline = None
        # Whether the path has weighed the other family's candidate of the
        # selected one's kind (see _weighFamilies): once per path.
        self._familiesWeighed = False
        # Counted, so that a round the reactor ran late still moves each
        # backoff by the intervals that passed.
        self._prober = self._loop(LoopingCall.withCount(self._probeRound))
        #: The public IP the stage manager saw the peer at: the only one a
        #: many-port punch (L{scanPorts}, L{probeFrom}) sends to.
        self.scanHost = introduction.address[0]
        #: The peer's public address as the stage manager saw it.
        self.introducedAddress = introduction.address
        #: The peer's NAT C{(mapping, filtering)}, once it says.
        self.peerNAT = None
        #: How many probes the many-port punch sent.
        self.scanProbesSent = 0
        self._scanQueue = []
        self._scanRate = 0.0
        self._scanUntil = None
        self._scanDone = None
        self._scanner = self._loop(LoopingCall.withCount(self._scanRound))
        self._keeper = self._loop(LoopingCall(self._keepalive))

    def _loop(self, call):
        call.clock = self.clock
        return call

    def _addCandidate(self, address, kind):
        for candidate in self.candidates:
            if candidate.address == address:
                return candidate
        candidate = Candidate(address, kind, self._send)
        self.candidates.append(candidate)
        self.candidates.sort(key=lambda c: -c.priority)
        return candidate

    def addCandidate(self, address, kind: str = RELAYED):
        """
        Add a candidate learned after the introduction: the peer's relayed
        address on a TURN server, probed from this socket after
        C{relayDelay} (see L{relayAtOnce}) and used only while no direct
        candidate answers; or the port mapping its router granted
        (L{MAPPED}), probed at once as the public address is; or its
        public address of the other family (L{PUBLIC}), which a path already
        up weighs against the one it has (see L{_weighFamilies}).
        """
        candidate = self._addCandidate(address, kind)
        if self.state == UP and self._isRival(candidate):
            self._upgradeUnlessBest()

    def relayAtOnce(self, reason: str):
        """
        Probe relayed candidates from now on, without waiting for
        C{relayDelay}: the NATs' behaviour says a direct path cannot work.

        @param reason: Why, for the log.
        """
        self._relayReason = reason

    def _relayDue(self) -> bool:
        return (
            self._relayReason is not None
            or self.clock.seconds() - self._startedAt >= self._relayDelay
        )

    def start(self):
        """
        Start punching.
        """
        self.state = PUNCHING
        self._startedAt = self.clock.seconds()
        self._deadline = self.clock.callLater(self._punchTimeout, self._timedOut)
        self._prober.start(self._probeInterval, now=True)

    def stop(self):
        """
        Stop everything: no timer of this punch remains.
        """
        if self.state in (PUNCHING, UP):
            self.state = STOPPED
        self._stopTimers()

    def _stopTimers(self):
        self._finishScan(None)
        for call in (self._prober, self._keeper):
            if call.running:
                call.stop()
        for delayed in (self._deadline, self._upgradeDeadline):
            if delayed is not None and delayed.active():
                delayed.cancel()
        self._inFlight.clear()

    def _probe(self, candidate, keepalive=False):
        txid = self._newTransactionID()
        self._inFlight[txid] = (candidate, self.clock.seconds())
        if not keepalive:
            self.probesSent += 1
        candidate.send(
            messages.encodeProbe(txid, self._wirePeer, self._wireMine, self.key, self.index)
        )

    def _probeRound(self, intervals):
        for candidate in self.candidates:
            if (
                self.selected is None
                or candidate.priority > self.selected.priority
                or self._isRival(candidate)
            ):
                if (
                    candidate.kind == RELAYED
                    and candidate.address not in self._heard
                    and not self._relayDue()
                ):
                    continue
                if candidate.address in self._heard or self._unheardDue(candidate, intervals):
                    self._probe(candidate)

    def _unheardDue(self, candidate, intervals):
        """
        Whether a candidate not heard from is due a probe this round, on its
        backoff and within its share of the budget; if so, charge it.

        @param intervals: How many probe intervals passed since the last
            round.
        """
        address = candidate.address
        before = self._unheardRounds.get(address)
        if before is None:
            self._unheardRounds[address] = 0
        else:
            # Due at 1, 2, 4, 8 ... intervals after the first probe: when
            # the count of intervals reaches the next power of two.
            after = self._unheardRounds[address] = before + intervals
            if after.bit_length() == before.bit_length():
                return False
        spent = self._unheardSpent.get(address, 0) + self._probeBytes
        if spent > self._unheardShare:
            return False
        self._unheardSpent[address] = spent
        self.unheardBytesSent += self._probeBytes
        return True

    # Many ports at once (punchd.hardnat)

    def scanPorts(self, ports, rate: float, linger: float = 1.0):
        """
        Probe many ports of the peer's public IP from this socket, C{rate} a
        second, each once, in order: the peer's NAT maps per destination.
        Only L{scanHost} is probed, whatever the ports.  It stops the moment
        a direct candidate answers, and when the punch ends.

        @param ports: The ports, best guesses first; their number is the
            budget.
        @param linger: Seconds to wait for answers after the last probe.
        """
        host = self.scanHost
        self._scan(
            [Candidate((host, port), PEER_REFLEXIVE, self._send) for port in ports],
            rate,
            linger,
        )

    def probeFrom(self, sources, rate: float, linger: float, done):
        """
        Probe the peer's public address from many sockets, C{rate} a second,
        each once: this side's NAT maps per destination, so each makes a
        mapping the peer's probes may meet.

        @param sources: The peer's public address as each socket sees it
            (L{punchd.hardnat.SideSource}s); what L{Punch}'s C{send} is
            given for them goes from that socket.  Only those at
            L{scanHost} are probed.
        @param linger: Seconds to go on taking the peer's probes after the
            last one is sent.
        @param done: Called once with the source whose socket the path
            runs over, or L{None}: when a direct candidate answers, the
            time is up, or the punch ends.  The other sockets may close.
        """
        self._scanDone = done
        self._scan(
            [
                Candidate(source, PEER_REFLEXIVE, self._send)
                for source in sources
                if source[0] == self.scanHost
            ],
            rate,
            linger,
        )

    def _scan(self, candidates, rate, linger):
        if self.state not in (PUNCHING, UP) or self._scanner.running:
            return
        self._scanQueue = candidates[::-1]
        self._scanRate = rate
        now = self.clock.seconds()
        self._scanUntil = now + len(candidates) / rate + linger
        # Punching goes on while the scan does.
        if self.state == PUNCHING and self._deadline.active():
            if self._deadline.getTime() < self._scanUntil:
                self._deadline.reset(self._scanUntil - now)
        self._scanCarry = 0.0
        self._scanner.start(self._probeInterval, now=True)

    def _scanRound(self, intervals):
        if self.clock.seconds() >= self._scanUntil:
            self._finishScan(None)
            return
        self._scanCarry += self._scanRate * self._probeInterval * intervals
        while self._scanCarry >= 1 and self._scanQueue:
            self._scanCarry -= 1
            candidate = self._scanQueue.pop()
            self.scanProbesSent += 1
            self._probe(candidate)
        if not self._scanQueue:
            self._scanCarry = 0.0

    def _finishScan(self, winner):
        if self._scanner.running:
            self._scanner.stop()
        self._scanQueue = []
        done, self._scanDone = self._scanDone, None
        if done is not None:
            done(winner)

    @property
    def scanning(self) -> bool:
        """
        Whether a many-port punch is going on.
        """
        return self._scanner.running

    def _timedOut(self):
        self.state = FAILED
        self._stopTimers()
        self._observer.punchFailed(self)

    def _stopProber(self):
        if self._prober.running:
            self._prober.stop()

    def handle(self, datagram: bytes, message: stun.Message, source) -> bool:
        """
        Take a STUN message that may be from the peer.

        @param datagram: The datagram as received, for the integrity check.
        @param message: It, decoded.
        @param source: The C{(host, port)} it came from.
        @return: L{True} if it was authenticated with this punch's key and
            handled, L{False} if it was not ours.
        @raise messages.InvalidMessage: If it was, but lacks the peer's
            L{messages.INDEX}.
        """
        if self.state not in (PUNCHING, UP):
            return False
        kind = (message.method, message.messageClass)
        # Which path a datagram is for is told without a key: by the names
        # it carries, or by the transaction it answers.  A peer with many
        # contacts checks one MAC per datagram, not one per contact.
        if kind == (stun.BINDING, stun.SUCCESS):
            if message.transactionID not in self._inFlight:
                return False
        elif message.get(stun.USERNAME) != self._username:
            return False
        if not stun.verifyIntegrity(datagram, self.key):
            return False
        if kind == (stun.BINDING, stun.REQUEST):
            self._learnIndex(messages.parseIndex(message))
            self._send(
                # A relayed source is (host, port, relay).
                messages.encodeProbeAnswer(message.transactionID, source[:2], self.key, self.index),
                source,
            )
            self._fromPeer(source)
        elif kind == (stun.BINDING, stun.SUCCESS):
            self._learnIndex(messages.parseIndex(message))
            # Asked for, so no sign that the peer moved: only of life.
            self.lastHeard = self.clock.seconds()
            self._heard.add(source)
            self._answered(message.transactionID)
        else:
            return False
        return True

    def frameReceived(self, datagram: bytes, source) -> bool:
        """
        Take a frame that carries this path's receiver index.

        @param datagram: The frame.
        @param source: The C{(host, port)} it came from.
        @return: L{True} if it was taken, and its payload handed to the
            observer; L{False} if the path takes no more frames.
        @raise frames.FrameError: If it is not authentic, or a replay.
        """
        if self.state not in (PUNCHING, UP):
            return False
        payload = self._reader.read(datagram)
        self._fromPeer(source)
        self._observer.dataReceived(self, payload, source)
        return True

    def _learnIndex(self, index):
        # The peer's index is its path's for life: the first one counts.
        if self._writer is None:
            self.peerIndex = index
            self._writer = frames.FrameWriter(self._writeKey, index)

    def _fromPeer(self, source):
        """
        Something authenticated came from the peer at C{source}: it is
        alive, and may have moved there.
        """
        self.lastHeard = self.clock.seconds()
        self._heard.add(source)
        selected = self.selected
        if selected is not None and source == selected.address:
            if self._strays:
                self._strays.clear()
            return
        candidate = self._candidateAt(source)
        new = candidate is None
        if new:
            # What came through our TURN relay: our answers and probes go
            # back the same way (the source says so).
            relayed = getattr(source, "relay", None) is not None
            candidate = self._addCandidate(source, RELAYED if relayed else PEER_REFLEXIVE)
            self.log.info(
                "Learned a new address for {peer}: {address}{how}",
                peer=self.peerName,
                address=formatAddress(source),
                how=", through our TURN relay" if relayed else "",
            )
            if relayed and source[0] == self.scanHost:
                # Where the TURN server saw the peer: behind a NAT that
                # keeps one mapping, its address for us too, though not
                # the one introduced once its NAT has restarted.  Probed
                # directly, as any address not heard from is, and only at
                # the IP the stage manager saw.
                self._addCandidate(source[:2], PEER_REFLEXIVE)
        if self.state != UP:
            if new:
                # A triggered check: the peer just opened our NAT for it.
                self._probe(candidate)
        elif candidate.priority >= selected.priority and (
            candidate.kind != RELAYED or self._reboundBehindRelay(source)
        ):
            # Through our relay come the peer's datagrams while we send
            # through its relay: no sign that it moved, unless they came
            # from another port before.
            self._strays.add(source)
            # Probed at most once a probe interval, however fast frames come.
            now = self.lastHeard
            if now - self._checked.get(source, -self._probeInterval) >= self._probeInterval:
                self._checked[source] = now
                self._probe(candidate)

    def _reboundBehindRelay(self, source) -> bool:
        """
        Whether C{source}, through our relay, is a new port of the peer's
        on a relayed path: it came through from another before, so its NAT
        gave it a new mapping (it restarted, say), and the peer's own
        allocation, made from the old one, may no longer reach it.
        """
        relay = getattr(source, "relay", None)
        return relay is not None and self.selected.kind == RELAYED and any(
            getattr(c.address, "relay", None) == relay and c.address != source and c.address in self._heard
            for c in self.candidates
        )

    def _candidateAt(self, address):
        for candidate in self.candidates:
            if candidate.address == address:
                return candidate
        return None

    def _isRival(self, candidate) -> bool:
        """
        Whether C{candidate} is of the selected one's kind but the other
        family, and not weighed against it yet: probed for a while after
        the path is up, for the lower round trip.
        """
        selected = self.selected
        return (
            not self._familiesWeighed
            and selected.kind != RELAYED
            and candidate.priority == selected.priority
            and candidate.family != selected.family
        )

    def _weighFamilies(self, candidate, rtt, selectedRTT) -> bool:
        """
        A rival of the other family answered: move the path to it if its
        round trip is lower, or about the same and it is IPv6.  Weighed
        once for the path.

        @return: Whether the path moves.
        """
        self._familiesWeighed = True
        margin = max(TIE_SHARE * selectedRTT, TIE_SECONDS)
        if rtt < selectedRTT - margin:
            why = "a lower round trip"
        elif rtt <= selectedRTT + margin and candidate.family == IPV6:
            why = "IPv6 on a tie"
        else:
            self.log.info(
                "Keeping the path to {peer} over {family}: round trip {rtt:.1f} ms against"
                " {other:.1f} ms over {otherFamily}",
                peer=self.peerName,
                family=self.selected.family,
                rtt=selectedRTT * 1000,
                other=rtt * 1000,
                otherFamily=candidate.family,
            )
            return False
        previous = self._select(candidate)
        self.log.info(
            "Path to {peer} moved to {family} {address}: round trip {rtt:.1f} ms against"
            " {previousRTT:.1f} ms over {previousFamily} ({why})",
            peer=self.peerName,
            family=candidate.family,
            address=repr(candidate),
            rtt=rtt * 1000,
            previousRTT=selectedRTT * 1000,
            previousFamily=previous.family,
            why=why,
        )
        self._observer.pathMoved(self, previous)
        return True

    def _answered(self, txid):
        candidate, sentAt = self._inFlight.pop(txid)
        known = self._candidateAt(candidate.address)
        if known is None:
            # One of the many ports or sockets of a scan met the peer.
            self.candidates.append(candidate)
            self.candidates.sort(key=lambda c: -c.priority)
            if self._scanner.running:
                self.log.info(
                    "Found a way through {peer}'s NAT after {probes} probe(s) of many ports: {address}",
                    peer=self.peerName,
                    probes=self.scanProbesSent,
                    address=formatAddress(candidate.address),
                )
        else:
            candidate = known
        # The peer got what was sent there: its consent, in RFC 7675's words.
        self._heard.add(candidate.address)
        selectedRTT, self.rtt = self.rtt, self.clock.seconds() - sentAt
        if self.state == UP and self._isRival(candidate):
            if not self._weighFamilies(candidate, self.rtt, selectedRTT):
                self.rtt = selectedRTT
            self._upgradeUnlessBest()
        elif self.state == PUNCHING:
            self.state = UP
            self.selected = candidate
            self._deadline.cancel()
            self._upgradeUnlessBest()
            self._keeper.start(self._keepaliveInterval, now=False)
            if candidate.kind != RELAYED:
                self._finishScan(self._winner())
            if candidate.kind == RELAYED:
                self.log.info(
                    "Path to {peer} is up, relayed via TURN server {server}: {why};"
                    " through {address}, round trip {rtt:.1f} ms, {elapsed:.0f} ms after"
                    " the introduction. Still trying direct.",
                    peer=self.peerName,
                    server="?" if self.relayServer is None else formatAddress(self.relayServer),
                    why=self._whyRelayed(),
                    address=formatAddress(candidate.address),
                    rtt=self.rtt * 1000,
                    elapsed=self.elapsed * 1000,
                )
            else:
                self.log.info(
                    "Direct path to {peer} is up via {address} over {family}: round trip"
                    " {rtt:.1f} ms, {elapsed:.0f} ms after the introduction, {probes} probe(s) sent",
                    peer=self.peerName,
                    address=repr(candidate),
                    family=candidate.family,
                    rtt=self.rtt * 1000,
                    elapsed=self.elapsed * 1000,
                    probes=self.probesSent,
                )
            self._observer.pathUp(self)
        elif candidate.priority > self.selected.priority:
            previous = self._select(candidate)
            if previous.kind == RELAYED:
                self.log.info(
                    "Direct path to {peer} is up via {address}, {elapsed:.0f} ms after"
                    " the introduction: the path moved off the TURN relay",
                    peer=self.peerName,
                    address=repr(candidate),
                    elapsed=self.elapsed * 1000,
                )
            else:
                self.log.info(
                    "Switched the path to {peer} from {previous} to the better {address}",
                    peer=self.peerName,
                    previous=repr(previous),
                    address=repr(candidate),
                )
            self._upgradeUnlessBest()
            if candidate.kind != RELAYED:
                self._finishScan(self._winner())
            self._observer.pathMoved(self, previous)
        elif candidate.address in self._strays:
            previous = self._select(candidate)
            self.log.info(
                "{peer} moved from {previous} to {address}: its NAT gave it a new"
                " port, or it has a new address. The path follows it.",
                peer=self.peerName,
                previous=repr(previous),
                address=repr(candidate),
            )
            self._observer.pathMoved(self, previous)

    def _winner(self):
        address = self.selected.address
        return address if isinstance(address, SideSource) else None

    def _select(self, candidate):
        """
        Make C{candidate} the selected one.

        @return: The one selected before.
        """
        previous = self.selected
        self.selected = candidate
        self._strays.clear()
        return previous

    def _whyRelayed(self) -> str:
        if self._relayReason is not None:
            return self._relayReason
        if self.elapsed >= self._relayDelay:
            return f"no direct candidate answered within {self._relayDelay:.1f} s"
        return f"{self.peerName} came through the relay first"

    def _upgradeUnlessBest(self):
        """
        Keep probing the candidates better than the selected one for a short
        while: long enough for an answer to come back, so that a local path
        wins over a public one.  Off a relay, direct candidates are tried
        until the punch would have given up.
        """
        if all(
            c.priority <= self.selected.priority and not self._isRival(c) for c in self.candidates
        ):
            self._stopProber()
            return
        if not self._prober.running:
            self._prober.start(self._probeInterval, now=True)
        if self.selected.kind == RELAYED:
            wait = self._startedAt + self._punchTimeout - self.clock.seconds()
            if self._upgradeDeadline is not None and self._upgradeDeadline.active():
                self._upgradeDeadline.cancel()
            self._upgradeDeadline = self.clock.callLater(max(0.5, wait), self._stopProber)
        elif self._upgradeDeadline is None or not self._upgradeDeadline.active():
            self._upgradeDeadline = self.clock.callLater(
                max(0.5, 3 * self.rtt), self._stopProber
            )

    def _keepalive(self):
        now = self.clock.seconds()
        if now - self.lastHeard > self._pathTimeout:
            self.state = LOST
            self._stopTimers()
            self._observer.pathLost(self)
            return
        # Forget keepalives whose answers were lost, so a long-lived path
        # holds a bounded number.
        horizon = now - self._pathTimeout
        self._inFlight = {
            txid: sent for txid, sent in self._inFlight.items() if sent[1] > horizon
        }
        self._probe(self.selected, keepalive=True)

    @property
    def kind(self) -> "str | None":
        """
        The kind of the selected candidate, or L{None} while not up.
        """
        return self.selected.kind if self.state == UP else None

    @property
    def family(self) -> "str | None":
        """
        The family of the selected candidate, L{IPV4} or L{IPV6}, or
        L{None} while not up.
        """
        return self.selected.family if self.state == UP else None

    def getPeer(self):
        if self.state != UP:
            return None
        # A relayed source is (host, port, relay).
        return udpAddress(self.selected.address[:2])

    def write(self, data: bytes):
        """
        Send C{data} to the peer over the path, in a frame.

        @param data: L{bytes}, at most L{frames.MAX_PAYLOAD_BYTES}.
        @raise ValueError: If it is larger.
        @raise RuntimeError: If the path is not up.
        """
        if self.state != UP:
            raise RuntimeError(f"the path to {self.peerName} is {self.state}, not up")
        self.selected.send(self._writer.frame(data))

    @property
    def elapsed(self) -> float:
        """
        Seconds since punching started.
        """
        return self.clock.seconds() - self._startedAt
