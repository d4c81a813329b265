"""
punchd from any Twisted program: run a L{DatagramProtocol} of your own on a
direct path to a contact behind another NAT.

Either as a service, in an L{twisted.application.service.Application}::

    service = PathService(("stage.example.net", 8080), "alice", "bob", MyProtocol())
    service.setServiceParent(application)
    service.whenPathUp().addCallback(lambda path: print(path.kind, path.rtt))

or with a function whose L{Deferred} fires with the path once it is up::

    path = await connect(reactor, ("192.0.2.10", 8080), "alice", "bob", MyProtocol())

When the path comes up, punchd calls the protocol's C{makeConnection} with
a transport (L{punchd.transport.PathTransport}) connected to the contact:
C{write(data)} sends a datagram of up to L{MAX_PAYLOAD_BYTES} over the
path, and each datagram from the contact arrives at C{datagramReceived(data,
address)}.  A protocol that also provides
L{punchd.interfaces.IPathObserver} is told when a path comes up, moves, is
lost or fails to open; each path says its C{kind} and C{rtt}.  A lost path
is punched again at the next introduction, and the protocol stays connected
meanwhile: what it writes while no path is up is dropped, as a network
would.  C{transport.stopListening()} says goodbye to the stage manager and
closes the peer's port.

The contact must run punchd too (C{twistd punch-peer}, or this API) with
the names the other way round, through the same stage manager.
"""

from twisted.internet import defer

from punchd.addresses import localAddressTowards
from punchd.frames import MAX_PAYLOAD_BYTES
from punchd.messages import sharedKey
from punchd.peer import PeerProtocol
from punchd.peer_tap import PeerService
from punchd.transport import DatagramApplication

__all__ = ["MAX_PAYLOAD_BYTES", "PathService", "connect"]


class PathService(PeerService):
    """
    A peer as a service: while it runs, it keeps a direct path to the
    contact, with the application's protocol on it.

    It binds its UDP port in C{privilegedStartService}, and when stopped it
    tells the stage manager to forget it.

    @ivar application: The L{DatagramApplication} that runs the protocol.
    """

    def __init__(
        self,
        server,
        name: str,
        peer: str,
        protocol,
        port: int = 0,
        interface: str = "",
        secret: "bytes | None" = None,
        peerSecret: "bytes | None" = None,
        localHosts=None,
        reactor=None,
        **settings,
    ):
        """
        @param server: The stage manager's C{(address, port)}, resolved.
        @param name: This peer's name.
        @param peer: The contact's name.
        @param protocol: A L{twisted.internet.protocol.DatagramProtocol},
            or a callable of the contact's name that returns one, called
            when the first path comes up.
        @param port: The local UDP port; 0 for any free one.
        @param interface: The address to bind; C{""} for every IPv4
            address, C{"::"} for IPv6 and IPv4.
        @param secret: The secret shared with a C{punch-server
            --secret-file}, or L{None}.
        @param peerSecret: A secret of at least 16 bytes shared with the
            contact (as C{punch-peer --peer-secret-file}): the names and the
            path's keys are derived from it, so nobody else can pass for
            the contact.  L{None} for none.
        @param localHosts: This machine's addresses on its own network,
            offered to the contact; by default the one it reaches the stage
            manager from.
        @param reactor: An L{twisted.internet.interfaces.IReactorUDP} and
            L{twisted.internet.interfaces.IReactorTime}; by default the
            global reactor.
        @param settings: More keyword arguments of
            L{punchd.peer.PeerProtocol}: C{interval}, C{punchTimeout},
            C{keepaliveInterval}, C{pathTimeout} and the like.
        """
        if reactor is None:
            from twisted.internet import reactor
        if localHosts is None:
            local = localAddressTowards(server)
            localHosts = () if local is None else (local,)
        self.application = DatagramApplication(reactor, protocol, peer)
        peerProtocol = PeerProtocol(
            reactor,
            server,
            name,
            peer,
            localHosts=localHosts,
            key=None if secret is None else sharedKey(secret),
            peerSecret=peerSecret,
            application=self.application,
            **settings,
        )
        self.application.peer = peerProtocol
        super().__init__(port, peerProtocol, interface=interface, reactor=reactor)

    def whenPathUp(self):
        """
        @return: A L{Deferred} that fires with the
            L{punchd.interfaces.IPath} up, at once if there is one, else
            when the next comes up; or fails with
            L{twisted.internet.error.ConnectError} if the service stops
            first.
        """
        return self.application.whenUp()


def connect(reactor, server, name: str, peer: str, protocol, **options):
    """
    Listen on a UDP port, register with the stage manager, and keep a
    direct path to the contact, with C{protocol} on it.

    @param reactor: An L{twisted.internet.interfaces.IReactorUDP} and
        L{twisted.internet.interfaces.IReactorTime}.
    @param server: The stage manager's C{(address, port)}, resolved.
    @param name: This peer's name.
    @param peer: The contact's name.
    @param protocol: A L{twisted.internet.protocol.DatagramProtocol}, or a
        callable of the contact's name that returns one.
    @param options: Keyword arguments of L{PathService}: C{port},
        C{secret}, C{peerSecret} and so on.
    @return: A L{Deferred} that fires with the
        L{punchd.interfaces.IPath} when it first comes up.  It waits as long
        as it takes (add a timeout with C{addTimeout}); cancelling it stops
        the peer.  Once it has fired, C{protocol.transport.stopListening()}
        stops the peer.
    """
    service = PathService(server, name, peer, protocol, reactor=reactor, **options)
    service.startService()
    cancelled = []

    def cancel(_):
        cancelled.append(True)
        service.stopService()

    def failed(failure):
        # Stopping the service, to cancel, fails the path's Deferred too:
        # the caller is told it was cancelled, not that.
        if not cancelled:
            result.errback(failure)

    result = defer.Deferred(cancel)
    service.whenPathUp().addCallbacks(result.callback, failed)
    return result
