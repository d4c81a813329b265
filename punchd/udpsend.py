"""
Sending datagrams from a UDP port without Twisted's address check.

C{twisted.internet.udp.Port.write} checks on every call that the address
is an IP literal of the port's family, so that C{sendto} never looks a name
up: three C{inet_pton} calls, one failing with an exception for IPv4.  For
a server that answers every datagram it receives, that check costs about as
much as building the answer.  A server that only ever sends to addresses
its socket reported (the source of a datagram, or one it stored from such a
source) has nothing to check, and can call C{sendto} itself.
"""

from errno import ECONNREFUSED, EINTR, EMSGSIZE

from twisted.internet import error


def sender(transport):
    """
    A function of C{(datagram, address)} that sends through C{transport}
    as C{transport.write} does, for addresses the transport's own socket
    reported.

    For an unconnected L{twisted.internet.udp.Port} that is the socket's
    C{sendto}, with C{write}'s handling of errors: retried when interrupted,
    L{error.MessageLengthError} for a datagram too long, nothing for a port
    unreachable, and any other L{OSError} raised.  For any other transport
    (a connected port, a fake in tests, another reactor's port) it is
    C{transport.write} itself.

    @param transport: The transport of a started L{DatagramProtocol}.
    """
    from twisted.internet import udp

    if not isinstance(transport, udp.Port) or transport._connectedAddr is not None:
        return transport.write
    sendto = transport.socket.sendto

    def send(datagram, address):
        while True:
            try:
                sendto(datagram, address)
                return
            except OSError as e:
                if e.errno == EINTR:
                    continue
                if e.errno == EMSGSIZE:
                    raise error.MessageLengthError("message too long") from None
                if e.errno == ECONNREFUSED:
                    return
                raise

    return send
