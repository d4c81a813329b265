"""
The server side of NAT behaviour discovery (RFC 5780).

A stage manager started with C{--alternate-port}, and optionally
C{--alternate-address}, listens on two ports (and two addresses) and answers
a Binding request from whichever of them its C{CHANGE-REQUEST} asks for,
naming the address it answers from (C{RESPONSE-ORIGIN}) and the one that
differs from the request's in address and port (C{OTHER-ADDRESS}).  A client
comparing what comes back, and what does not, learns how its NAT maps and
filters.
"""

from twisted.internet.protocol import DatagramProtocol

from punchd import stun
from punchd.addresses import formatAddress, unmapped

#: RFC 8489's error for a comprehension-required attribute the server
#: cannot honour; RFC 5780 uses it for a CHANGE-REQUEST without an
#: alternate address.
UNKNOWN_ATTRIBUTE = 420


class BehaviourDiscovery:
    """
    The sockets of a stage manager that offers RFC 5780, and the answers
    to Binding requests that arrive on any of them.

    Sockets are keyed by C{(addressIndex, portIndex)}: C{(0, 0)} is the
    primary address and port, C{(0, 1)} the primary address and alternate
    port, C{(1, 0)} and C{(1, 1)} the same on the alternate address.

    @ivar addresses: The socket addresses, C{(host, port)}, by key.
    """

    def __init__(self, primary, alternatePort: int, alternateAddress: "str | None" = None):
        """
        @param primary: The C{(host, port)} of the stage manager's socket;
            the host must be a specific address, since the answers name it.
        @param alternatePort: The second port.
        @param alternateAddress: The second address, or L{None}.
        """
        hosts = [primary[0]] + ([alternateAddress] if alternateAddress else [])
        ports = [primary[1], alternatePort]
        self.addresses = {
            (a, p): (host, port)
            for a, host in enumerate(hosts)
            for p, port in enumerate(ports)
        }
        self._senders = {}

    def attach(self, key, send):
        """
        Record how to send from the socket C{key}, once it listens.

        @param send: A function of C{(datagram, address)}.
        """
        self._senders[key] = send

    def alternateSockets(self, drops):
        """
        The sockets other than the primary one, each with the protocol to
        listen with.

        @param drops: The L{punchd.drops.DropCounter} to count what they
            drop.
        @return: C{(key, (host, port), protocol)} for each.
        """
        return [
            (key, address, _AlternateSocket(self, key, drops))
            for key, address in sorted(self.addresses.items())
            if key != (0, 0)
        ]

    def answer(self, key, message: stun.Message, source) -> None:
        """
        Answer a Binding request that arrived on socket C{key}.

        @raise stun.StunError: If its C{CHANGE-REQUEST} is malformed.
        """
        txid = message.transactionID
        changeIP = changePort = False
        value = message.get(stun.CHANGE_REQUEST)
        if value is not None:
            changeIP, changePort = stun.decodeChangeRequest(value)
        if changeIP and (1, 0) not in self.addresses:
            self._senders[key](
                stun.encode(
                    stun.Message(
                        stun.BINDING,
                        stun.ERROR,
                        txid,
                        (
                            (
                                stun.ERROR_CODE,
                                stun.encodeErrorCode(
                                    UNKNOWN_ATTRIBUTE, "No alternate address to change to"
                                ),
                            ),
                            (stun.UNKNOWN_ATTRIBUTES, stun.CHANGE_REQUEST.to_bytes(2, "big")),
                        ),
                    )
                ),
                source,
            )
            return
        fromKey = (key[0] ^ changeIP, key[1] ^ changePort)
        other = self.addresses.get((1 - key[0], 1 - key[1]), self.addresses[(key[0], 1 - key[1])])
        observed = unmapped(source)
        if message.classic:
            mapped = (stun.MAPPED_ADDRESS, stun.encodeAddress(*observed))
        else:
            mapped = (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(*observed, txid))
        self._senders[fromKey](
            stun.encode(
                stun.Message(
                    stun.BINDING,
                    stun.SUCCESS,
                    txid,
                    (
                        mapped,
                        (stun.RESPONSE_ORIGIN, stun.encodeAddress(*self.addresses[fromKey])),
                        (stun.OTHER_ADDRESS, stun.encodeAddress(*other)),
                    ),
                ),
                fingerprint=message.get(stun.FINGERPRINT) is not None,
            ),
            source,
        )

    def describe(self) -> str:
        """
        The sockets, for the log.
        """
        return ", ".join(formatAddress(a) for _, a in sorted(self.addresses.items()))


class _AlternateSocket(DatagramProtocol):
    """
    One of the alternate sockets: it answers Binding requests and drops
    everything else.
    """

    noisy = False

    def __init__(self, discovery, key, drops):
        self.discovery = discovery
        self.key = key
        self.drops = drops

    def startProtocol(self):
        self.discovery.attach(self.key, self.transport.write)

    def datagramReceived(self, datagram, address):
        try:
            message = stun.decode(datagram)
            if (message.method, message.messageClass) != (stun.BINDING, stun.REQUEST):
                self.drops.drop("unexpected message", formatAddress(address), "alternate port")
                return
            self.discovery.answer(self.key, message, address)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
