"""
Talking to an original C{test-client}, which knows nothing of STUN.

An L{OriginalContact} stands where a L{punchd.punching.Punch} would, for a
peer that speaks only the original programs' text: it sends the direct
message to the peer's address once a second, from the start (the original
client does the same, and those datagrams are what open both NATs), and
hands on the text messages that come from that address.

The original protocol has no authentication: any host that can send from
that address, or spoof it, can put words in the original client's mouth.
Messages from it are reported as such.
"""

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from punchd import seedprotocol
from punchd.addresses import formatAddress
from punchd.punching import LOST, PUBLIC, PUNCHING, STOPPED, UP, Candidate


class OriginalContact:
    """
    Exchange the original's text messages with an original peer.

    It is L{PUNCHING} until the first message from the peer arrives, then
    L{UP}; once up, a peer silent for C{pathTimeout} seconds is L{LOST}.
    While punching it sends for as long as it takes: an original client
    learns of us only from the server, at its next registration, maybe 30 s
    away.

    @ivar peerName: The original peer's name.
    @ivar selected: The L{Candidate} of its address.
    @ivar state: L{PUNCHING}, L{UP}, L{LOST} or L{STOPPED}.
    @ivar key: Always L{None}: the original has no keys.
    @ivar lastHeard: When a message from the peer last arrived, or L{None}.
    @ivar messagesSent: How many direct messages it sent.
    """

    log = Logger()
    key = None

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
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends.
        @param myName: This peer's name.
        @param peerName: The original peer's name.
        @param address: Its C{(host, port)}.
        @param text: The direct message to send it.
        @param observer: Told of each message through its method
            C{messageReceived(contact, text, source)}, and of a silent peer
            through C{pathLost(contact)}.
        @param messageInterval: Seconds between two direct messages.
        @param pathTimeout: Seconds of silence after which a peer that was
            heard is lost.
        """
        self.clock = clock
        self._send = send
        self.myName = myName
        self.peerName = peerName
        self.selected = Candidate(address, PUBLIC)
        self.text = text
        self._datagram = seedprotocol.encodeDirectMessage(text)
        self._observer = observer
        self._messageInterval = messageInterval
        self._pathTimeout = pathTimeout
        self.state = STOPPED
        self.lastHeard = None
        self.messagesSent = 0
        self._startedAt = None
        self._sender = LoopingCall(self._tick)
        self._sender.clock = clock

    @property
    def address(self):
        """
        The original peer's C{(host, port)}.
        """
        return self.selected.address

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
        self._sender.start(self._messageInterval, now=True)

    def stop(self):
        """
        Stop sending: no timer of this contact remains.
        """
        if self.state in (PUNCHING, UP):
            self.state = STOPPED
        if self._sender.running:
            self._sender.stop()

    def _tick(self):
        now = self.clock.seconds()
        if self.state == UP and now - self.lastHeard > self._pathTimeout:
            self.state = LOST
            self._sender.stop()
            self._observer.pathLost(self)
            return
        self._send(self._datagram, self.address)
        self.messagesSent += 1

    def handleText(self, datagram: bytes, source) -> bool:
        """
        Take a datagram that is not STUN.

        @return: L{True} if it came from the original peer's address and was
            handed on as a message, L{False} if it was not ours.
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
        self._observer.messageReceived(
            self, seedprotocol.decodeDirectMessage(datagram), source
        )
        return True

    def handle(self, datagram, message, source) -> bool:
        """
        Take a STUN message: never ours, since the original speaks no STUN.
        """
        return False

    @property
    def elapsed(self) -> float:
        """
        Seconds since it started sending.
        """
        return self.clock.seconds() - self._startedAt
