"""
Sending datagrams from a UDP port without Twisted's address check.

C{twisted.internet.udp.Port.write} checks on every call that the address
is an IP literal of the port's family, so that C{sendto} never looks a name
up: three C{inet_pton} calls, one failing with an exception for IPv4.  For
a server that answers every datagram it receives, that check costs about as
much as building the answer.  A server that only ever sends to addresses
its socket reported (the source of a datagram, or one it stored from such a
source) has nothing to check, and can call C{sendto} itself.

Under load the socket's send buffer can fill: C{sendto} then fails with
C{EAGAIN} (or C{ENOBUFS}) rather than block.  Raised from a protocol's
C{datagramReceived}, that error would be logged by Twisted with a traceback
per datagram; here the datagram is counted as dropped instead, as UDP
would have lost it anyway.
"""

from errno import EAGAIN, ECONNREFUSED, EINTR, EMSGSIZE, ENOBUFS, EWOULDBLOCK

from twisted.internet import error

from punchd.addresses import formatAddress

#: What C{sendto} fails with when the send buffer has no room.
_BUFFER_FULL = frozenset({EAGAIN, EWOULDBLOCK, ENOBUFS})


def _connected(handle) -> bool:
    try:
        handle.getpeername()
    except OSError:
        return False
    return True


def sender(transport, drops):
    """
    A function of C{(datagram, address)} that sends through C{transport}
    as C{transport.write} does, for addresses the transport's own socket
    reported, and counts a datagram that the send buffer has no room for
    as dropped, C{"send buffer full"}.

    For an unconnected L{twisted.internet.udp.Port} it calls the C{sendto}
    of the port's socket (its L{ISystemHandle.getHandle
    <twisted.internet.interfaces.ISystemHandle.getHandle>}), with
    C{write}'s handling of errors: retried when interrupted,
    L{error.MessageLengthError} for a datagram too long, nothing for a port
    unreachable, and any other L{OSError} raised.  For any other transport
    (a connected port, a fake in tests, another reactor's port) it calls
    C{transport.write} itself.  Whether the port is connected is decided
    now, from its socket: the stage manager never connects its port.

    @param transport: The transport of a started L{DatagramProtocol}.
    @param drops: The L{punchd.drops.DropCounter} to count drops in.
    """
    from twisted.internet import udp

    def full(e, address):
        drops.drop("send buffer full", formatAddress(address), e.strerror, outgoing=True)

    if not isinstance(transport, udp.Port) or _connected(transport.getHandle()):
        write = transport.write

        def send(datagram, address):
            try:
                write(datagram, address)
            except OSError as e:
                if e.errno not in _BUFFER_FULL:
                    raise
                full(e, address)

        return send

    sendto = transport.getHandle().sendto

    def send(datagram, address):
        while True:
            try:
                sendto(datagram, address)
                return
            except OSError as e:
                if e.errno == EINTR:
                    continue
                if e.errno in _BUFFER_FULL:
                    full(e, address)
                    return
                if e.errno == EMSGSIZE:
                    raise error.MessageLengthError("message too long") from None
                if e.errno == ECONNREFUSED:
                    return
                raise

    return send
