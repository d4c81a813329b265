"""
UDP forwarding between a local port and a path: the application that
C{punch-peer --forward} runs on the path instead of the demo message.

A local program (WireGuard, say) sends datagrams to the forwarding port,
and each goes to the contact over the path.  Each datagram from the contact
is sent from the forwarding port, so that the local program's replies come
back through it: to the C{--deliver} address, or without one to the local
program that last sent to the port.

Nothing is queued.  A datagram that arrives while no path is up, or that is
larger than the path carries, is counted by reason and dropped, as the
network would have lost it: a queue would only deliver it late and out of
order to a real-time protocol, which has its own retransmissions.
"""

from errno import EAGAIN, ENOBUFS, EWOULDBLOCK

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from punchd import udpsend
from punchd.addresses import formatAddress
from punchd.drops import DropCounter
from punchd.interfaces import IPathObserver, IPathReceiver

#: What the peer's socket fails with when its send buffer has no room.
_BUFFER_FULL = frozenset({EAGAIN, EWOULDBLOCK, ENOBUFS})

#: The reasons datagrams are dropped for, the keys of C{Forwarder.drops.counts}.
NO_PATH = "no path up"
TOO_LARGE = "too large for the path"
NO_LOCAL_PROGRAM = "no local program to deliver to"
BUFFER_FULL = "send buffer full"


@implementer(IPathObserver, IPathReceiver)
class Forwarder(DatagramProtocol):
    """
    The protocol of a local UDP port whose datagrams go to one contact over
    its path, and the application on that path, whose datagrams come out of
    the port.

    Listen on the port with it and give it to
    L{punchd.peer.PeerProtocol} as its C{application}.

    @ivar peerName: The contact's name.
    @ivar deliver: The C{(host, port)} datagrams from the contact go to, or
        L{None} to send them to the local program that last sent to the
        port.
    @ivar lastSender: The C{(host, port)} of the local program that last
        sent to the port, or L{None}.
    @ivar path: The L{punchd.interfaces.IPath} that is up, or L{None}.
    @ivar forwarded: How many datagrams went to the contact.
    @ivar delivered: How many datagrams from the contact were sent on to
        the local program.
    @ivar drops: The L{DropCounter} of datagrams dropped either way, by
        reason: L{NO_PATH}, L{TOO_LARGE}, L{NO_LOCAL_PROGRAM} and
        L{BUFFER_FULL}.  It logs them at a bounded rate.
    """

    noisy = False
    log = Logger()

    def __init__(self, clock, peerName: str, deliver=None):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}, for
            the rate of the drop warnings.
        @param peerName: The contact's name, for the log.
        @param deliver: The C{(host, port)} to send datagrams from the
            contact to, an address literal of the port's family; L{None}
            for the last local sender.
        """
        self.peerName = peerName
        self.deliver = deliver
        self.lastSender = None
        self.path = None
        self.forwarded = 0
        self.delivered = 0
        self.drops = DropCounter(clock)
        self._send = None

    def startProtocol(self):
        self._send = udpsend.sender(self.transport, self.drops)
        host = self.transport.getHost()
        self.log.info(
            "Forwarding datagrams sent to {local} to {peer} once a path is up;"
            " datagrams from {peer} go to {deliver}",
            local=formatAddress((host.host, host.port)),
            peer=self.peerName,
            deliver="the last local sender"
            if self.deliver is None
            else formatAddress(self.deliver),
        )

    # From the local program

    def datagramReceived(self, data, address):
        if self.deliver is None:
            self.lastSender = address
        path = self.path
        if path is None:
            self.drops.drop(NO_PATH, formatAddress(address), f"for {self.peerName}")
            return
        try:
            path.write(data)
        except ValueError as e:
            self.drops.drop(TOO_LARGE, formatAddress(address), str(e))
        except RuntimeError as e:
            # Replaced or stopped without a word: a new path will say so.
            self.drops.drop(NO_PATH, formatAddress(address), str(e))
        except OSError as e:
            if e.errno not in _BUFFER_FULL:
                raise
            self.drops.drop(BUFFER_FULL, self.peerName, e.strerror, outgoing=True)
        else:
            self.forwarded += 1

    # From the contact

    def dataReceived(self, path, data, source):
        to = self.deliver if self.deliver is not None else self.lastSender
        if to is None:
            self.drops.drop(
                NO_LOCAL_PROGRAM,
                f"{path.peerName} at {formatAddress(source)}",
                "nothing has sent to the forwarding port yet",
            )
            return
        self._send(data, to)
        self.delivered += 1

    # What happens to the path

    def pathUp(self, path):
        self.path = path
        self.log.info(
            "Forwarding to {peer} over the path via {address}",
            peer=path.peerName,
            address=formatAddress(path.selected.address),
        )

    def pathMoved(self, path, previous):
        # Each write goes to the path's selected candidate: nothing to do.
        pass

    def pathLost(self, path):
        if path is self.path:
            self.path = None

    def punchFailed(self, path):
        # A path that failed was never up, so never the one written to.
        pass

    def stop(self):
        """
        Forget the path, and log how many datagrams went each way and how
        many were dropped.
        """
        self.path = None
        self.log.info(
            "Forwarded {forwarded} datagram(s) to {peer} and delivered {delivered}"
            " from it; dropped {dropped}",
            forwarded=self.forwarded,
            delivered=self.delivered,
            peer=self.peerName,
            dropped=", ".join(f"{n} ({reason})" for reason, n in sorted(self.drops.counts.items()))
            or "none",
        )
