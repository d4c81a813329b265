"""
The path to an original C{test-client}, which knows nothing of STUN.

An L{OriginalContact} is a path (L{punchd.interfaces.IPath}) like a
L{punchd.punching.Punch}, for a peer that speaks only the original
programs' text: while punching it sends the direct message to the peer's
address once a second, from the start (the original client does the same,
and those datagrams are what open both NATs); once the peer is heard, the
application on the path writes to it, and the datagrams that come from
that address are handed on.

The original protocol has no authentication: any host that can send from
that address, or spoof it, can put words in the original client's mouth.
Messages from it are reported as such.
"""

from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd.addresses import formatAddress, udpAddress
from punchd.compat import protocol
from punchd.interfaces import IPath
from punchd.punching import FAILED, IPV4, IPV6, LOST, PUBLIC, PUNCHING, STOPPED, UP, Candidate


@implementer(IPath)
class OriginalContact:
    """
    Exchange the original's text messages with an original peer.

    It is L{PUNCHING} until the first message from the peer arrives, then
    L{UP}; once up, a peer silent for C{pathTimeout} seconds is L{LOST}.
    While punching it sends for as long as it takes, or for C{punchTimeout}
    seconds: an original client that talks to an original server learns of
    us only at its next registration, maybe 30 s away; but one introduced
    by a punch-server learns of us when we learn of it, and an address
    that has not answered within a few seconds may not be an original
    client at all, only spoofed as one.

    @ivar peerName: The original peer's name.
    @ivar selected: The L{Candidate} of its address.
    @ivar state: L{PUNCHING}, L{UP}, L{FAILED}, L{LOST} or L{STOPPED}.
    @ivar rtt: Always L{None}: the original protocol has nothing to time.
    @ivar lastHeard: When a message from the peer last arrived, or L{None}.
    @ivar messagesSent: How many direct messages it sent while punching.
    """

    log = Logger()
    rtt = None

    def __init__(
        self,
        clock,
        send,
        myName: str,
        peerName: str,
        address,
        text: str,
        observer,
        messageInterval: float = 1.0,
        pathTimeout: float = 15.0,
        punchTimeout: "float | None" = None,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends.
        @param myName: This peer's name.
        @param peerName: The original peer's name.
        @param address: Its C{(host, port)}.
        @param text: The direct message to send it while punching.
        @param observer: An L{punchd.interfaces.IPathObserver} and
            L{punchd.interfaces.IPathReceiver}.
        @param messageInterval: Seconds between two direct messages while
            punching, and between two checks for silence once up.
        @param pathTimeout: Seconds of silence after which a peer that was
            heard is lost.
        @param punchTimeout: Seconds to send to a peer not yet heard before
            giving up (L{FAILED}); L{None} to send until it is heard.
        """
        self.clock = clock
        self.myName = myName
        self.peerName = peerName
        self.selected = Candidate(address, PUBLIC, send)
        self._datagram = protocol.encodeDirectMessage(text)
        self._observer = observer
        self._messageInterval = messageInterval
        self._pathTimeout = pathTimeout
        self._punchTimeout = punchTimeout
        self.state = STOPPED
        self.lastHeard = None
        self.messagesSent = 0
        self._startedAt = None
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = clock

    @property
    def address(self):
        """
        The original peer's C{(host, port)}.
        """
        return self.selected.address

    @property
    def kind(self):
        return PUBLIC if self.state == UP else None

    @property
    def family(self):
        if self.state != UP:
            return None
        return IPV6 if ":" in self.address[0] else IPV4

    def getPeer(self):
        if self.state != UP:
            return None
        return udpAddress(self.address)

    def start(self):
        """
        Start sending the direct message, once every C{messageInterval}
        seconds.
        """
        self.state = PUNCHING
        self._startedAt = self.clock.seconds()
        self.log.info(
            "Sending {peer} at {address} the original's direct message every"
            " {interval} s, in its unauthenticated text",
            peer=self.peerName,
            address=formatAddress(self.address),
            interval=self._messageInterval,
        )
        self._ticker.start(self._messageInterval, now=True)

    def stop(self):
        """
        Stop sending: no timer of this contact remains.
        """
        if self.state in (PUNCHING, UP):
            self.state = STOPPED
        if self._ticker.running:
            self._ticker.stop()

    def write(self, data: bytes):
        """
        Send C{data} to the original peer, as it is: a direct message.

        @raise ValueError: If it is larger than the original reads.
        @raise RuntimeError: If the path is not up.
        """
        if self.state != UP:
            raise RuntimeError(f"the path to {self.peerName} is {self.state}, not up")
        if len(data) > protocol.MAX_DATAGRAM:
            raise ValueError(
                f"an original client reads at most {protocol.MAX_DATAGRAM} bytes, not {len(data)}"
            )
        self.selected.send(data)

    @property
    def candidates(self):
        """
        The one address the original peer is sent to.
        """
        return (self.selected,)

    @property
    def probesSent(self) -> int:
        """
        How many direct messages were sent while punching.
        """
        return self.messagesSent

    @property
    def elapsed(self) -> float:
        """
        Seconds since punching started.
        """
        return self.clock.seconds() - self._startedAt

    def _tick(self):
        if self.state == PUNCHING:
            if self._punchTimeout is not None and self.elapsed >= self._punchTimeout:
                self.state = FAILED
                self._ticker.stop()
                self._observer.punchFailed(self)
                return
            self.selected.send(self._datagram)
            self.messagesSent += 1
        elif self.clock.seconds() - self.lastHeard > self._pathTimeout:
            self.state = LOST
            self._ticker.stop()
            self._observer.pathLost(self)

    def handleText(self, datagram: bytes, source) -> bool:
        """
        Take a datagram that is not STUN.

        @return: L{True} if it came from the original peer's address and was
            handed on, L{False} if it was not ours.
        """
        if self.state not in (PUNCHING, UP) or source != self.address:
            return False
        self.lastHeard = self.clock.seconds()
        if self.state == PUNCHING:
            self.state = UP
            self.log.info(
                "{peer}, an original test-client, is talking to us from {address},"
                " {elapsed:.1f} s after we started sending to it. Its messages are"
                " not authenticated: whoever can send from that address could"
                " have written them.",
                peer=self.peerName,
                address=formatAddress(source),
                elapsed=self.elapsed,
            )
            self._observer.pathUp(self)
        self._observer.dataReceived(self, datagram, source)
        return True

    def handle(self, datagram, message, source) -> bool:
        """
        Take a STUN message: never ours, since the original speaks no STUN.
        """
        return False
