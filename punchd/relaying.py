"""
A peer's relayed address on a TURN server, for the contacts it cannot
reach directly.

When an introduction carries TURN credentials (the stage manager's
C{--turn-server}), the peer allocates a relayed address with a
L{punchd.turn.TurnClient} on its one socket (one allocation for all its
contacts, as TURN allows one per socket), lets in the contact's public IP,
and sends the relayed address through the stage manager to the contact
(a C{CANDIDATE}, signed as introductions are).  Each peer then probes the
other's relayed address from its own socket, as one more candidate of
kind L{punchd.punching.RELAYED}, the least preferred: the probe arrives
through the other's relay, in a Data indication or ChannelData, and is
answered back through it.  So each direction goes through the receiver's
relay, and each NAT sees only datagrams to and from the TURN server.

What comes through the relay reaches the paths with a L{RelayedSource}
for its source: datagrams to it go back through the relay.
"""

from twisted.internet.defer import CancelledError
from twisted.logger import Logger

from punchd.addresses import formatAddress
from punchd.natprobe import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT
from punchd.transactions import TransactionTimeout
from punchd.turn import TurnClient, TurnError


class RelayedSource(tuple):
    """
    A peer's address as our TURN relay shows it: C{(host, port, relay)}, so
    that it equals no address reached directly; C{[0]} and C{[1]} are the
    host and port, as for any address.
    """

    __slots__ = ()

    def __new__(cls, peer, relay):
        return tuple.__new__(cls, (peer[0], peer[1], relay))

    @property
    def peer(self):
        """
        The C{(host, port)} the relay sends to.
        """
        return (self[0], self[1])

    @property
    def relay(self):
        """
        The TURN server's C{(host, port)}.
        """
        return self[2]


def _kind(behaviour) -> str:
    mapping, filtering = behaviour
    if mapping != ENDPOINT_INDEPENDENT:
        return "symmetric NAT"
    return {
        ENDPOINT_INDEPENDENT: "full cone NAT",
        "address-dependent": "restricted cone NAT",
        ADDRESS_AND_PORT_DEPENDENT: "port-restricted cone NAT",
    }[filtering]


def directImpossible(mine, theirs) -> "str | None":
    """
    Whether the behaviours of two NATs rule out a direct path: one maps per
    destination, so the other cannot know the port to let in, and the other
    lets in only the exact address and port it sent to.

    @param mine: This peer's C{(mapping, filtering)}, or L{None} if not
        known.
    @param theirs: The contact's, the same.
    @return: Why, in words for the log, or L{None} if direct may work or
        either is not known.
    """
    if mine is None or theirs is None:
        return None

    def blocks(a, b):
        return a[0] != ENDPOINT_INDEPENDENT and b[1] == ADDRESS_AND_PORT_DEPENDENT

    if blocks(mine, theirs) or blocks(theirs, mine):
        return f"a direct path is impossible between a {_kind(mine)} and a {_kind(theirs)}"
    return None


class Relay:
    """
    This peer's allocation on one TURN server, shared by its contacts.

    @ivar server: The TURN server's C{(host, port)}.
    @ivar relayed: The relayed C{(host, port)}, once allocated.
    @ivar failed: Why the allocation failed, or L{None}.
    """

    log = Logger()

    def __init__(self, clock, send, credentials, received):
        """
        @param send: A function of C{(datagram, address)} that sends from
            the peer's socket.
        @param credentials: The introduction's L{punchd.messages.TurnCredentials}.
        @param received: A function of C{(datagram, source)} for what comes
            through the relay, C{source} a L{RelayedSource}.
        """
        self.server = credentials.server
        self._realm = credentials.realm
        self._received = received
        self.client = TurnClient(
            clock,
            send,
            credentials.server,
            credentials.username,
            credentials.password,
            received=self._fromRelay,
        )
        self.relayed = None
        self.failed = None
        self._waiting = []
        self._binding = set()
        self._started = None

    def start(self):
        """
        Allocate.
        """
        self._started = self.client.clock.seconds()
        self.client.allocate().addCallbacks(self._allocated, self._failed)

    def _allocated(self, relayed):
        if self._realm is not None and self.client.realm != self._realm:
            self._failed(
                TurnError(
                    "Allocate",
                    None,
                    f"the server's realm is {self.client.realm!r}, not {self._realm!r}"
                    " as the stage manager said",
                )
            )
            return
        self.relayed = relayed
        self.log.info(
            "Allocated the relayed address {relayed} on the TURN server {server}"
            " in {elapsed:.0f} ms",
            relayed=formatAddress(relayed),
            server=formatAddress(self.server),
            elapsed=(self.client.clock.seconds() - self._started) * 1000,
        )
        waiting, self._waiting = self._waiting, []
        for f in waiting:
            f(relayed)

    def _failed(self, failure):
        if not isinstance(failure, Exception):
            failure.trap(TurnError, TransactionTimeout, CancelledError)
            if failure.check(CancelledError):
                return
            failure = failure.value
        self.failed = str(failure)
        self._waiting = []
        self.client.stop()
        self.log.warn(
            "The TURN server {server} gave no relayed address: {why}."
            " Going on with direct candidates only.",
            server=formatAddress(self.server),
            why=self.failed,
        )

    @property
    def usable(self) -> bool:
        """
        Whether the allocation is being made or holds: not if it failed,
        lapsed (a refused refresh, credentials past their expiry) or was
        stopped.
        """
        if self.failed is not None or self.client.stopped:
            return False
        return self.relayed is None or self.client.relayed is not None

    def whenAllocated(self, f):
        """
        Call C{f(relayed)} once allocated (at once if it is); never if the
        allocation failed.
        """
        if self.relayed is not None:
            f(self.relayed)
        elif self.failed is None:
            self._waiting.append(f)

    def permit(self, host):
        """
        Let a contact's IP in through the relay.

        @return: A Deferred that fires when the server granted it.
        """
        return self.client.permit(host)

    def handle(self, datagram, source) -> bool:
        """
        Take a datagram from the TURN server, if it is ours.
        """
        return self.client.handle(datagram, source)

    def _fromRelay(self, data, peer):
        self._received(data, RelayedSource(peer, self.server))

    def sendTo(self, datagram, source):
        """
        Send a datagram through the relay to a L{RelayedSource}: in a Send
        indication at first, in ChannelData once a channel is bound, which
        the first send asks for.
        """
        peer = source.peer
        if self.relayed is not None and peer not in self._binding:
            self._binding.add(peer)
            self.client.bind(peer).addErrback(self._notBound, peer)
        self.client.sendTo(datagram, peer)

    def _notBound(self, failure, peer):
        failure.trap(TurnError, TransactionTimeout, CancelledError, RuntimeError)
        self._binding.discard(peer)
        if not failure.check(CancelledError):
            self.log.info(
                "No channel to {peer} on the TURN server {server}: {why}; Send indications carry its data",
                peer=formatAddress(peer),
                server=formatAddress(self.server),
                why=failure.getErrorMessage(),
            )

    def stop(self):
        """
        Deallocate: no timer remains.
        """
        self._waiting = []
        self.client.stop()
