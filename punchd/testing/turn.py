"""
A small TURN server (RFC 8656) for the simulated network: enough of one to
test a TURN client and the peers that relay through it without coturn.

It checks coturn's REST-API credentials (C{--use-auth-secret}): the
password of C{EXPIRY:NAME} is the base64 of HMAC-SHA1 of the secret over
it, refused after EXPIRY.  It answers Allocate (after a 401 with REALM and
NONCE), Refresh, CreatePermission and ChannelBind, relays Send
indications and ChannelData out of a relayed port of its own host, and
what comes in there from a permitted IP back in Data indications or
ChannelData.  No quotas, no TCP, IPv4 only.
"""

import base64
import hmac
import struct

from twisted.internet.protocol import DatagramProtocol

from punchd import stun, turn


class _Allocation:
    def __init__(self, server, client, port):
        self.server = server
        self.client = client
        self.port = port
        self.permissions = set()
        self.channels = {}
        self.peers = {}


class _RelayedPort(DatagramProtocol):
    noisy = False

    def __init__(self, allocation):
        self.allocation = allocation

    def datagramReceived(self, data, peer):
        allocation = self.allocation
        if peer[0] not in allocation.permissions:
            allocation.server.dropped.append((data, peer))
            return
        number = allocation.peers.get(peer)
        if number is not None:
            allocation.server.send(turn.encodeChannelData(number, data), allocation.client)
            return
        txid = stun.newTransactionID()
        allocation.server.send(
            stun.encode(
                stun.Message(
                    turn.DATA,
                    stun.INDICATION,
                    txid,
                    (
                        (turn.XOR_PEER_ADDRESS, stun.encodeXorAddress(*peer, txid)),
                        (turn.DATA_ATTRIBUTE, data),
                    ),
                ),
                fingerprint=True,
            ),
            allocation.client,
        )


class FakeTurnServer(DatagramProtocol):
    """
    A TURN server on one host of a L{punchd.testing.Network}.

    @ivar allocations: The allocations, by client address.
    @ivar requests: Every request, by method name, counted.
    @ivar dropped: What came to a relayed port from an IP not permitted.
    """

    noisy = False

    def __init__(self, host, secret: bytes, realm: str = "punchd", firstRelayedPort: int = 49152):
        """
        @param host: The L{punchd.testing.Host} it runs on, whose time it
            reads and where the relayed ports open.
        """
        self.host = host
        self._secret = secret
        self.realm = realm
        self._nextPort = firstRelayedPort
        self.allocations = {}
        self.requests = {}
        self.dropped = []

    def send(self, datagram, address):
        self.transport.write(datagram, address)

    def _password(self, username: str) -> "str | None":
        expiry, _, _ = username.partition(":")
        if not expiry.isdigit() or int(expiry) < self.host.seconds():
            return None
        return base64.b64encode(hmac.digest(self._secret, username.encode(), "sha1")).decode()

    def _answer(self, request, attributes=(), key=None, code=None, reason=""):
        if code is not None:
            attributes = ((stun.ERROR_CODE, stun.encodeErrorCode(code, reason)),) + tuple(attributes)
        return stun.encode(
            stun.Message(
                request.method,
                stun.ERROR if code is not None else stun.SUCCESS,
                request.transactionID,
                tuple(attributes),
            ),
            integrityKey=key,
            fingerprint=True,
        )

    def datagramReceived(self, datagram, client):
        allocation = self.allocations.get(client)
        if turn.isChannelData(datagram):
            number, data = turn.decodeChannelData(datagram)
            if allocation is not None and number in allocation.channels:
                allocation.port.write(data, allocation.channels[number])
            return
        message = stun.decode(datagram)
        if (message.method, message.messageClass) == (turn.SEND, stun.INDICATION):
            if allocation is None:
                return
            peer = stun.decodeXorAddress(message.get(turn.XOR_PEER_ADDRESS), message.transactionID)
            if peer[0] in allocation.permissions:
                allocation.port.write(message.get(turn.DATA_ATTRIBUTE), peer)
            return
        if message.messageClass != stun.REQUEST:
            return
        name = turn._METHOD_NAMES.get(message.method, hex(message.method))
        self.requests[name] = self.requests.get(name, 0) + 1
        username = message.get(stun.USERNAME)
        password = None if username is None else self._password(username.decode())
        challenge = (
            (stun.REALM, self.realm.encode()),
            (stun.NONCE, b"fake nonce"),
        )
        if password is None:
            self.send(self._answer(message, challenge, code=401, reason="Unauthorized"), client)
            return
        key = turn.longTermKey(username.decode(), self.realm, password)
        if not stun.verifyIntegrity(datagram, key):
            self.send(self._answer(message, challenge, code=401, reason="Unauthorized"), client)
            return
        txid = message.transactionID
        if message.method == turn.ALLOCATE:
            if allocation is not None:
                self.send(self._answer(message, code=437, reason="Allocation Mismatch"), client)
                return
            port = self._nextPort
            self._nextPort += 1
            allocation = _Allocation(self, client, None)
            allocation.port = self.host.listenUDP(port, _RelayedPort(allocation))
            self.allocations[client] = allocation
            self.send(
                self._answer(
                    message,
                    (
                        (turn.XOR_RELAYED_ADDRESS, stun.encodeXorAddress(self.host.address, port, txid)),
                        (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*client, txid)),
                        (turn.LIFETIME, struct.pack("!I", 600)),
                    ),
                    key,
                ),
                client,
            )
            return
        if allocation is None:
            self.send(self._answer(message, code=437, reason="Allocation Mismatch"), client)
            return
        if message.method == turn.REFRESH:
            lifetime = struct.unpack("!I", message.get(turn.LIFETIME) or b"\0\0\2\x58")[0]
            if lifetime == 0:
                allocation.port.stopListening()
                del self.allocations[client]
            self.send(self._answer(message, ((turn.LIFETIME, struct.pack("!I", lifetime)),), key), client)
        elif message.method == turn.CREATE_PERMISSION:
            peer = stun.decodeXorAddress(message.get(turn.XOR_PEER_ADDRESS), txid)
            allocation.permissions.add(peer[0])
            self.send(self._answer(message, (), key), client)
        elif message.method == turn.CHANNEL_BIND:
            number = struct.unpack("!H", message.get(turn.CHANNEL_NUMBER)[:2])[0]
            peer = stun.decodeXorAddress(message.get(turn.XOR_PEER_ADDRESS), txid)
            allocation.channels[number] = peer
            allocation.peers[peer] = number
            allocation.permissions.add(peer[0])
            self.send(self._answer(message, (), key), client)
