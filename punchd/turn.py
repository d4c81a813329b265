"""
A TURN client (RFC 8656) on the STUN codec, with no I/O of its own.

A L{TurnClient} asks one TURN server for a relayed address and keeps it:
Allocate with the long-term credential mechanism (RFC 8489 9.2), Refresh
before the allocation expires, CreatePermission and ChannelBind for each
peer it talks to, and data to and from the peers in ChannelData messages,
or in Send and Data indications until a channel is bound.  It sends
through a function it is given and reads the clock it is given, like
L{punchd.punching.Punch}: the peer's one socket carries it beside
everything else, and L{TurnClient.handle} takes what the TURN server sends
back (ChannelData by its first byte, 0x40 to 0x4F as RFC 7983 has it, and
STUN by transaction).

Every request goes through a L{punchd.transactions.Transactions}; a failure
is a L{TurnError} with the server's code and reason, or
L{punchd.transactions.TransactionTimeout}.

The credentials are the REST-API form coturn checks with
C{--use-auth-secret}: L{restCredentials} makes them, on the stage manager.
"""

import base64
import hashlib
import hmac
import struct

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.logger import Logger

from punchd import stun
from punchd.addresses import formatAddress
from punchd.transactions import Transactions, TransactionTimeout

# RFC 8656 18: methods.
ALLOCATE = 0x003
REFRESH = 0x004
SEND = 0x006
DATA = 0x007
CREATE_PERMISSION = 0x008
CHANNEL_BIND = 0x009

# RFC 8656 18: attributes.
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA_ATTRIBUTE = 0x0013
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
REQUESTED_TRANSPORT = 0x0019
DONT_FRAGMENT = 0x001A

#: REQUESTED-TRANSPORT's value for UDP: the protocol number, then RFFU.
_UDP = bytes((17, 0, 0, 0))

# RFC 8656 and RFC 8489: error codes the client acts on.
UNAUTHENTICATED = 401
FORBIDDEN = 403
ALLOCATION_MISMATCH = 437
STALE_NONCE = 438
WRONG_CREDENTIALS = 441
QUOTA_REACHED = 486
INSUFFICIENT_CAPACITY = 508

#: The channel numbers a client may bind (RFC 8656 12).
FIRST_CHANNEL = 0x4000
LAST_CHANNEL = 0x4FFF

#: Seconds a permission lasts on the server (RFC 8656 9), and a channel
#: binding (RFC 8656 12); each is renewed a minute early.
PERMISSION_LIFETIME = 300
CHANNEL_LIFETIME = 600
_EARLY = 60

#: The retransmissions of a request: RFC 8489 6.2.1's RTO of 500 ms doubled
#: each time, seven transmissions, and 16 RTO for the last answer, cut to
#: 39.5 s in all.
RETRANSMISSIONS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 8.0)

_CHANNEL_HEADER = struct.Struct("!HH")


class TurnError(Exception):
    """
    The TURN server refused a request, or answered what cannot be used.

    @ivar code: The STUN error code (401, 403, 486...), or L{None} when the
        answer itself was unusable.
    @ivar reason: The server's reason phrase, or what was wrong.
    @ivar method: The name of the request refused: C{"Allocate"}...
    """

    def __init__(self, method: str, code: "int | None", reason: str):
        self.method = method
        self.code = code
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.code is None:
            return f"{self.method}: {self.reason}"
        return f"{self.method} refused: {self.code} {self.reason}"


_METHOD_NAMES = {
    ALLOCATE: "Allocate",
    REFRESH: "Refresh",
    CREATE_PERMISSION: "CreatePermission",
    CHANNEL_BIND: "ChannelBind",
}


def restCredentials(secret: bytes, name: str, now: float, lifetime: float):
    """
    Short-lived TURN credentials in the form coturn checks with
    C{--use-auth-secret --static-auth-secret=SECRET}: the username is
    C{EXPIRY:NAME}, EXPIRY the Unix time after which they are refused, and
    the password the base64 of HMAC-SHA1 of the secret over the username.

    @param secret: The secret the TURN server has, as bytes.
    @param name: The name the credentials are for.
    @param now: The time now, as from C{time.time()}.
    @param lifetime: Seconds they are good for.
    @return: C{(username, password)}, both L{str}.
    """
    username = f"{int(now + lifetime)}:{name}"
    mac = hmac.digest(secret, username.encode("utf-8"), "sha1")
    return username, base64.b64encode(mac).decode("ascii")


#: Seconds the credentials the stage manager hands out are good for, by
#: default.  The allocation is refreshed with them, so a relayed path lasts
#: at most this long before the peer needs a new introduction.
CREDENTIAL_LIFETIME = 3600.0


class RelayOffer:
    """
    The TURN server the stage manager offers introduced peers, and the
    secret it makes their credentials from.  The stage manager never talks
    to the TURN server.

    @ivar server: The TURN server's C{(host, port)}.
    @ivar realm: Its realm, or L{None} if not given.
    @ivar lifetime: Seconds each peer's credentials are good for.
    """

    def __init__(self, server, secret: bytes, realm=None, lifetime=CREDENTIAL_LIFETIME):
        self.server = server
        self._secret = secret
        self.realm = realm
        self.lifetime = lifetime

    def credentials(self, name: str, now: float):
        """
        Fresh credentials for the peer C{name}: see L{restCredentials}.
        """
        return restCredentials(self._secret, name, now, self.lifetime)


def longTermKey(username: str, realm: str, password: str) -> bytes:
    """
    The key of MESSAGE-INTEGRITY under the long-term credential mechanism
    (RFC 8489 9.2.2): MD5 of C{username:realm:password}.
    """
    return hashlib.md5(f"{username}:{realm}:{password}".encode("utf-8")).digest()


def isChannelData(datagram: bytes) -> bool:
    """
    Whether a datagram is a ChannelData message: its first byte is 0x40 to
    0x4F (RFC 7983), and it holds a whole header.
    """
    return len(datagram) >= 4 and 0x40 <= datagram[0] <= 0x4F


def encodeChannelData(channel: int, data: bytes) -> bytes:
    """
    A ChannelData message (RFC 8656 12.4), padded to a multiple of four
    bytes as a message over TCP must be, which is harmless over UDP.
    """
    return _CHANNEL_HEADER.pack(channel, len(data)) + data + bytes(-len(data) % 4)


def decodeChannelData(datagram: bytes):
    """
    Read a ChannelData message.

    @return: C{(channel, data)}.
    @raise ValueError: If its length field runs past the datagram.
    """
    channel, length = _CHANNEL_HEADER.unpack_from(datagram)
    if 4 + length > len(datagram):
        raise ValueError(
            f"ChannelData says {length} bytes, the datagram holds {len(datagram) - 4}"
        )
    return channel, datagram[4 : 4 + length]


class _Channel:
    __slots__ = ("number", "peer", "bound", "call")

    def __init__(self, number, peer):
        self.number = number
        self.peer = peer
        self.bound = False
        self.call = None


class TurnClient:
    """
    One allocation on one TURN server, for one socket.

    L{allocate} first; then L{permit} each peer's IP, so that the relay lets
    its datagrams in, and L{bind} a channel to each peer address data goes
    to; L{sendTo} sends data to a peer, in ChannelData on a bound channel,
    in a Send indication otherwise.  What peers send to the relayed address
    comes to C{received(data, peer)}.  L{stop} deallocates.

    @ivar server: The TURN server's C{(host, port)}.
    @ivar relayed: The relayed C{(host, port)} once allocated, else
        L{None}.
    @ivar mapped: This socket's address as the TURN server saw it, once
        allocated.
    @ivar lifetime: The allocation's lifetime in seconds, as granted.
    @ivar realm: The server's realm, once it said it.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        send,
        server,
        username: str,
        password: str,
        received=None,
        lifetime: int = 600,
        newTransactionID=stun.newTransactionID,
        retransmissions=RETRANSMISSIONS,
        software: "str | None" = None,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param send: A function of C{(datagram, address)} that sends from
            the socket.
        @param server: The TURN server's C{(host, port)}, resolved.
        @param username: The long-term credential's username.
        @param password: Its password.
        @param received: A function of C{(data, peer)} called with what
            each peer sends to the relayed address.
        @param lifetime: The allocation lifetime to ask for, in seconds.
        @param retransmissions: The schedule of each request (see
            L{Transactions}).
        """
        self.clock = clock
        self._send = send
        self.server = server
        self.username = username
        self._password = password
        self._received = received or (lambda data, peer: None)
        self._wantedLifetime = lifetime
        self._newTransactionID = newTransactionID
        self._schedule = retransmissions
        self._software = software
        self._transactions = Transactions(clock, self._sendToServer)
        self.realm = None
        self._nonce = None
        self._key = None
        self.relayed = None
        self.mapped = None
        self.lifetime = None
        self.stopped = False
        self._refreshCall = None
        self._allocating = None
        self._permissions = {}
        self._channels = {}
        self._byNumber = {}
        self._nextChannel = FIRST_CHANNEL
        self._requests = {}

    def _sendToServer(self, datagram, address):
        self._send(datagram, address)

    # Requests

    def _request(self, method: int, attributes, retried=False) -> Deferred:
        """
        Send a request, with the credentials once the server asked for
        them; the first 401 (which brings the realm and a nonce) and a 438
        (a new nonce) are answered by sending it again, once.

        @param attributes: A function of the transaction ID returning the
            request's own attributes, as C{(type, value)} pairs.
        @return: A Deferred of the success response, a L{stun.Message}.
        """
        txid = self._newTransactionID()
        own = tuple(attributes(txid))
        if self._software is not None and method == ALLOCATE:
            own += ((stun.SOFTWARE, self._software.encode("utf-8")),)
        signed = self._key is not None
        if not signed:
            datagram = stun.encode(stun.Message(method, stun.REQUEST, txid, own), fingerprint=True)
        else:
            datagram = stun.encode(
                stun.Message(method, stun.REQUEST, txid, own + self._credentials()),
                integrityKey=self._key,
                fingerprint=True,
            )
        d = self._transactions.request(txid, datagram, self.server, self._schedule)
        d.addCallback(self._answered, method, attributes, signed, retried)
        return d

    def _credentials(self):
        return (
            (stun.USERNAME, self.username.encode("utf-8")),
            (stun.REALM, self.realm.encode("utf-8")),
            (stun.NONCE, self._nonce),
        )

    def _answered(self, answer, method, attributes, signed, retried):
        datagram, message = answer
        name = _METHOD_NAMES.get(method, f"method {method:#05x}")
        if message.messageClass == stun.SUCCESS:
            if signed and not stun.verifyIntegrity(datagram, self._key):
                raise TurnError(name, None, "the answer's MESSAGE-INTEGRITY is not the server's")
            return message
        code, reason = _errorOf(message)
        nonce = message.get(stun.NONCE)
        # A 401 to a request that carried the credentials means they are
        # wrong: not retried, whatever nonce it brings.
        challenge = (code == UNAUTHENTICATED and not signed) or code == STALE_NONCE
        if challenge and nonce is not None and not retried:
            realm = message.get(stun.REALM)
            if realm is not None:
                self.realm = realm.decode("utf-8", "replace")
            if self.realm is None:
                raise TurnError(name, code, f"{reason} (and no REALM to answer in)")
            self._nonce = nonce
            self._key = longTermKey(self.username, self.realm, self._password)
            return self._request(method, attributes, retried=True)
        raise TurnError(name, code, reason)

    def handle(self, datagram: bytes, source) -> bool:
        """
        Take a datagram that came to the socket, if it is this client's:
        it came from the TURN server and is ChannelData of a bound channel,
        the answer to a request in flight, or a Data indication.

        @param datagram: The datagram as received.
        @param source: Its C{(host, port)}.
        @return: Whether it was this client's, and is taken care of.
        """
        if source != self.server or self.stopped:
            return False
        if isChannelData(datagram):
            try:
                number, data = decodeChannelData(datagram)
            except ValueError:
                return False
            channel = self._byNumber.get(number)
            if channel is None:
                return False
            self._received(data, channel.peer)
            return True
        try:
            message = stun.decode(datagram)
        except stun.StunError:
            return False
        if message.messageClass in (stun.SUCCESS, stun.ERROR):
            return self._transactions.answer(message.transactionID, (datagram, message))
        if (message.method, message.messageClass) == (DATA, stun.INDICATION):
            peer = message.get(XOR_PEER_ADDRESS)
            data = message.get(DATA_ATTRIBUTE)
            if peer is None or data is None:
                return False
            try:
                peer = stun.decodeXorAddress(peer, message.transactionID)
            except stun.StunError:
                return False
            self._received(data, peer)
            return True
        return False

    # Allocation

    def allocate(self) -> Deferred:
        """
        Ask for a relayed address, and keep it: refreshed before it
        expires.

        @return: A Deferred of the relayed C{(host, port)}; it fails with a
            L{TurnError} or L{TransactionTimeout}.
        """
        if self._allocating is not None:
            return fail(RuntimeError("allocate() called twice"))
        attributes = [(REQUESTED_TRANSPORT, _UDP)]
        if self._wantedLifetime is not None:
            attributes.append((LIFETIME, struct.pack("!I", self._wantedLifetime)))
        if ":" in self.server[0]:
            attributes.append((REQUESTED_ADDRESS_FAMILY, bytes((2, 0, 0, 0))))
        self._allocating = self._request(ALLOCATE, lambda txid: attributes)
        self._allocating.addCallback(self._allocated)
        return self._allocating

    def _allocated(self, message):
        relayed = message.get(XOR_RELAYED_ADDRESS)
        if relayed is None:
            raise TurnError("Allocate", None, "the answer has no XOR-RELAYED-ADDRESS")
        try:
            self.relayed = stun.decodeXorAddress(relayed, message.transactionID)
            mapped = message.get(stun.XOR_MAPPED_ADDRESS)
            if mapped is not None:
                self.mapped = stun.decodeXorAddress(mapped, message.transactionID)
        except stun.StunError as e:
            raise TurnError("Allocate", None, f"a bad address in the answer: {e}") from None
        self.lifetime = _lifetimeOf(message, self._wantedLifetime or 600)
        self._scheduleRefresh()
        return self.relayed

    def _scheduleRefresh(self):
        # A minute early, or at half the lifetime when it is shorter.
        delay = max(self.lifetime - _EARLY, self.lifetime / 2)
        self._refreshCall = self.clock.callLater(delay, self._refresh)

    def _refresh(self):
        self._refreshCall = None
        lifetime = struct.pack("!I", self._wantedLifetime or 600)
        d = self._request(REFRESH, lambda txid: [(LIFETIME, lifetime)])

        def refreshed(message):
            self.lifetime = _lifetimeOf(message, self.lifetime)
            self._scheduleRefresh()

        def failed(failure):
            failure.trap(TurnError, TransactionTimeout, CancelledError)
            if failure.check(CancelledError):
                return
            self.log.warn(
                "The TURN server {server} did not refresh the allocation of {relayed}: {why}",
                server=formatAddress(self.server),
                relayed=formatAddress(self.relayed),
                why=failure.getErrorMessage(),
            )
            self.relayed = None
            self._stopTimers()

        d.addCallbacks(refreshed, failed)

    # Permissions and channels

    def permit(self, host: str) -> Deferred:
        """
        Let in datagrams from an IP (any port) to the relayed address, and
        keep the permission: CreatePermission, renewed before its five
        minutes run out.

        @return: A Deferred that fires when the server granted it.
        """
        if self.relayed is None:
            return fail(RuntimeError("no allocation"))
        call = self._permissions.get(host)
        if call is not None and call.active():
            return succeed(None)
        d = self._request(
            CREATE_PERMISSION, lambda txid: [(XOR_PEER_ADDRESS, _xorPeer(host, 0, txid))]
        )
        d.addCallback(self._permitted, host)
        return d

    def _permitted(self, _, host):
        self._permissions[host] = self.clock.callLater(
            PERMISSION_LIFETIME - _EARLY, self._renewPermission, host
        )

    def _renewPermission(self, host):
        del self._permissions[host]
        self.permit(host).addErrback(self._lapsed, "permission for", host)

    def bind(self, peer) -> Deferred:
        """
        Bind a channel to a peer address, for data to and from it in
        ChannelData, and keep it bound (which keeps the permission for its
        IP too).

        @param peer: C{(host, port)}.
        @return: A Deferred of the channel number.
        """
        if self.relayed is None:
            return fail(RuntimeError("no allocation"))
        channel = self._channels.get(peer)
        if channel is None:
            if self._nextChannel > LAST_CHANNEL:
                return fail(RuntimeError("no channel numbers left"))
            channel = self._channels[peer] = _Channel(self._nextChannel, peer)
            self._nextChannel += 1
        number = struct.pack("!HH", channel.number, 0)
        d = self._request(
            CHANNEL_BIND,
            lambda txid: [(CHANNEL_NUMBER, number), (XOR_PEER_ADDRESS, _xorPeer(*peer, txid))],
        )
        d.addCallback(self._bound, channel)
        return d

    def _bound(self, _, channel):
        channel.bound = True
        self._byNumber[channel.number] = channel
        if channel.call is not None and channel.call.active():
            channel.call.cancel()
        channel.call = self.clock.callLater(CHANNEL_LIFETIME - _EARLY, self._renewChannel, channel)
        return channel.number

    def _renewChannel(self, channel):
        channel.call = None
        self.bind(channel.peer).addErrback(self._lapsed, "channel to", formatAddress(channel.peer))

    def _lapsed(self, failure, what, whom):
        failure.trap(TurnError, TransactionTimeout, CancelledError, RuntimeError)
        if not failure.check(CancelledError):
            self.log.warn(
                "The TURN server {server} did not renew the {what} {whom}: {why}",
                server=formatAddress(self.server),
                what=what,
                whom=whom,
                why=failure.getErrorMessage(),
            )

    def channelOf(self, peer) -> "int | None":
        """
        The number of the channel bound to C{peer}, or L{None}.
        """
        channel = self._channels.get(peer)
        return channel.number if channel is not None and channel.bound else None

    # Data

    def sendTo(self, data: bytes, peer):
        """
        Send data to a peer through the relay: ChannelData on the channel
        bound to it, a Send indication if there is none.

        @param peer: C{(host, port)}.
        """
        if self.relayed is None or self.stopped:
            return
        channel = self._channels.get(peer)
        if channel is not None and channel.bound:
            self._send(encodeChannelData(channel.number, data), self.server)
            return
        txid = self._newTransactionID()
        self._send(
            stun.encode(
                stun.Message(
                    SEND,
                    stun.INDICATION,
                    txid,
                    ((XOR_PEER_ADDRESS, _xorPeer(*peer, txid)), (DATA_ATTRIBUTE, data)),
                ),
                fingerprint=True,
            ),
            self.server,
        )

    # Stopping

    def _stopTimers(self):
        if self._refreshCall is not None and self._refreshCall.active():
            self._refreshCall.cancel()
        self._refreshCall = None
        for call in self._permissions.values():
            if call.active():
                call.cancel()
        self._permissions.clear()
        for channel in self._channels.values():
            if channel.call is not None and channel.call.active():
                channel.call.cancel()
            channel.call = None

    def stop(self):
        """
        Deallocate (a Refresh with a lifetime of 0, sent once: a lost one
        only means the allocation expires on its own) and stop: no timer
        of this client remains.
        """
        if self.stopped:
            return
        self.stopped = True
        self._stopTimers()
        self._transactions.withdrawAll()
        if self.relayed is not None and self._key is not None:
            txid = self._newTransactionID()
            self._send(
                stun.encode(
                    stun.Message(
                        REFRESH,
                        stun.REQUEST,
                        txid,
                        ((LIFETIME, struct.pack("!I", 0)),) + self._credentials(),
                    ),
                    integrityKey=self._key,
                    fingerprint=True,
                ),
                self.server,
            )
        self.relayed = None


def _xorPeer(host, port, transactionID):
    return stun.encodeXorAddress(host, port, transactionID)


def _errorOf(message):
    value = message.get(stun.ERROR_CODE)
    if value is None:
        return None, "an error response without ERROR-CODE"
    try:
        return stun.decodeErrorCode(value)
    except stun.StunError as e:
        return None, f"a bad ERROR-CODE: {e}"


def _lifetimeOf(message, default):
    value = message.get(LIFETIME)
    if value is None or len(value) != 4:
        return default
    return struct.unpack("!I", value)[0]
