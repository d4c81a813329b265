"""
An application's own L{DatagramProtocol} on the paths to a contact.

L{DatagramApplication} is what L{punchd.peer.PeerProtocol} runs on the path
(its C{application}): when the first path to the contact comes up, it
connects the protocol to a L{PathTransport}, whose C{write} sends over the
path, and hands the protocol each datagram from the contact.  To the
protocol, punchd is a connected UDP port.  If the protocol also provides
L{IPathObserver}, it is told what happens to the paths: up, moved, lost,
failed, each with the path, its C{kind} and its C{rtt}.

A lost path is punched again at the next introduction; the protocol stays
connected throughout, and what it writes while no path is up is dropped
and counted, as the network would have lost it.
"""

from twisted.internet import defer, error
from twisted.internet.interfaces import IUDPTransport
from twisted.internet.protocol import AbstractDatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from punchd import frames
from punchd.drops import DropCounter
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.punching import UP

#: Why a datagram was dropped, the keys of L{DatagramApplication.drops}.
NO_PATH = "no path up"


@implementer(IUDPTransport)
class PathTransport:
    """
    The transport of an application's protocol: a UDP port connected to
    the contact, over whichever path is up.
    """

    def __init__(self, application):
        """
        @param application: The L{DatagramApplication} it belongs to.
        """
        self._application = application

    def write(self, packet, addr=None):
        """
        Send a datagram to the contact over the path.

        @param packet: L{bytes}, at most L{frames.MAX_PAYLOAD_BYTES}.
        @param addr: Ignored: everything goes to the contact.  A protocol
            written for an unconnected port answers to the address a
            datagram came from, which is the contact's (or was, before the
            path moved).
        @raise ValueError: If C{packet} is larger than a path carries.
        """
        self._application.send(packet)

    def connect(self, host, port):
        """
        Refuse: the transport is connected to the contact already.

        @raise RuntimeError: Always.
        """
        raise RuntimeError("already connected to the contact; reconnecting is not supported")

    def getHost(self):
        """
        @return: The address of the peer's own UDP port.
        """
        return self._application.peer.transport.getHost()

    def getPeer(self):
        """
        @return: The contact's address on the path up now, or on the last
            path that was up: an L{twisted.internet.address.IPv4Address} or
            L{twisted.internet.address.IPv6Address} of type C{'UDP'}.
        """
        return self._application.peerAddress

    def stopListening(self):
        """
        Stop the peer: it tells the stage manager to forget it and closes its
        port, which stops the protocol.

        @return: What the port's C{stopListening} returns.
        """
        peer = self._application.peer
        peer.leave()
        return peer.transport.stopListening()

    def setBroadcastAllowed(self, enabled):
        """
        Refuse: a path goes to one contact.

        @raise RuntimeError: If C{enabled}.
        """
        if enabled:
            raise RuntimeError("a path goes to one contact: there is no broadcast")

    def getBroadcastAllowed(self):
        """
        @return: L{False}.
        """
        return False


@implementer(IPathObserver, IPathReceiver)
class DatagramApplication:
    """
    Run a L{DatagramProtocol} on the paths to one contact.

    @ivar protocol: The protocol, once the first path came up; before, what
        was given (a protocol or a factory of them).
    @ivar transport: Its L{PathTransport}.
    @ivar path: The last path that came up, or L{None}.
    @ivar peerAddress: The contact's address on it, or L{None}.
    @ivar peer: The L{punchd.peer.PeerProtocol} it runs on; whoever makes
        both sets it.
    @ivar drops: The L{DropCounter} of datagrams dropped either way while
        no path was up.
    @ivar connected: Whether the protocol was connected.
    """

    log = Logger()

    def __init__(self, clock, protocol, contact: str):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param protocol: A L{DatagramProtocol}, or a callable of the
            contact's name that returns one, called when the first path to
            it comes up.
        @param contact: The contact's name.
        """
        self.protocol = protocol
        self.contact = contact
        self.transport = PathTransport(self)
        self.path = None
        self.peerAddress = None
        self.peer = None
        self.connected = False
        self.drops = DropCounter(clock)
        self._waiting = []

    def whenUp(self):
        """
        @return: A L{defer.Deferred} that fires with the path that is up,
            at once if one is, else when the next one comes up; or fails
            with L{error.ConnectError} if the application stops first.
        """
        if self.path is not None and self.path.state == UP:
            return defer.succeed(self.path)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def send(self, data: bytes):
        """
        Send C{data} over the path up, or count it dropped if none is.

        @raise ValueError: If it is larger than a path carries.
        """
        if len(data) > frames.MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"a datagram on a path carries at most {frames.MAX_PAYLOAD_BYTES} bytes,"
                f" not {len(data)}"
            )
        path = self.path
        if path is None or path.state != UP:
            self.drops.drop(NO_PATH, self.contact, "written by the application", outgoing=True)
            return
        path.write(data)

    def _observer(self):
        if self.connected and IPathObserver.providedBy(self.protocol):
            return self.protocol
        return None

    # IPathObserver and IPathReceiver, for the peer.

    def pathUp(self, path):
        self.path = path
        self.peerAddress = path.getPeer()
        if not self.connected:
            if not isinstance(self.protocol, AbstractDatagramProtocol):
                self.protocol = self.protocol(self.contact)
            self.connected = True
            self.protocol.makeConnection(self.transport)
        observer = self._observer()
        if observer is not None:
            observer.pathUp(path)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(path)

    def pathMoved(self, path, previous):
        self.peerAddress = path.getPeer()
        observer = self._observer()
        if observer is not None:
            observer.pathMoved(path, previous)

    def pathLost(self, path):
        observer = self._observer()
        if observer is not None:
            observer.pathLost(path)

    def punchFailed(self, path):
        observer = self._observer()
        if observer is not None:
            observer.punchFailed(path)

    def dataReceived(self, path, data, source):
        if path is not self.path or not self.connected:
            # A frame of a path still opening: its first datagrams can come
            # before our side has seen an answer.
            self.drops.drop(NO_PATH, self.contact, "from the contact")
            return
        self.protocol.datagramReceived(data, source)

    def stop(self):
        """
        The peer stopped: stop the protocol, and fail whoever waits for a
        path.
        """
        if self.connected:
            self.protocol.doStop()
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(error.ConnectError(string=f"stopped before a path to {self.contact} came up"))
