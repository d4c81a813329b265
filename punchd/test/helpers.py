"""
Helpers shared by punchd's unit tests: a stage manager's address on the
simulated network, a client that records what it receives, registrations,
an application that says nothing, and a world of a stage manager and two
peers.
"""

import random

from twisted.internet.protocol import DatagramProtocol
from zope.interface import implementer

from punchd import messages, stun
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.testing import Network

#: Where the stage manager listens on the simulated network.
SERVER = ("192.0.2.10", 8080)


class Recorder(DatagramProtocol):
    """
    Records what it receives, decoded.

    @ivar received: C{(message, address, datagram)} for every datagram, in
        the order they arrived.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, datagram, address):
        self.received.append((stun.decode(datagram), address, datagram))

    def messages(self, method, messageClass):
        """
        @return: The messages received of C{method} and C{messageClass}.
        """
        return [m for m, _, _ in self.received if (m.method, m.messageClass) == (method, messageClass)]


@implementer(IPathObserver, IPathReceiver)
class Quiet:
    """
    An application that says nothing on its path, and notes when it first
    came up: a thousand greeters would mostly measure the log.

    @ivar upAt: The time on the clock its path first came up, or L{None}.
    """

    def __init__(self, clock):
        self._clock = clock
        self.upAt = None

    def pathUp(self, path):
        if self.upAt is None:
            self.upAt = self._clock.seconds()

    def pathMoved(self, path, previous):
        pass

    def pathLost(self, path):
        pass

    def punchFailed(self, path):
        pass

    def dataReceived(self, path, data, source):
        pass


def contacts(wants=None, seeking=False):
    """
    The C{wants} and C{seeking} of a L{messages.Registration} from the
    shorthands tests use: C{wants} a name, L{None} or a tuple of names, and
    C{seeking} L{True} for all of them.
    """
    wants = () if wants is None else (wants,) if isinstance(wants, str) else tuple(wants)
    if seeking is True:
        seeking = wants
    return wants, tuple(seeking or ())


def registration(name, wants=None, seeking=False, local=(), txid=None, cookie=None, secret=None):
    """
    An encoded registration of C{name}, with a fresh transaction id unless
    C{txid} is given, proving that it holds the name's C{secret} if given;
    see L{contacts} for C{wants} and C{seeking}.
    """
    txid = txid or stun.newTransactionID()
    wants, seeking = contacts(wants, seeking)
    return messages.encodeRegistration(
        txid,
        messages.Registration(name, wants, tuple(local), seeking, cookie),
        key=None if secret is None else messages.registrationKey(secret),
    )


def heldSecret(answers):
    """
    The name secret a registrant holds after the registration answers
    C{answers} (L{stun.Message}s, in order): the last C{NAME-SECRET}, moved
    on by each C{NAME-NONCE} after it, as a L{punchd.registration.Registrar}
    would, when no answer was lost.
    """
    secret = None
    for answer in answers:
        if (answer.method, answer.messageClass) != (messages.REGISTER, stun.SUCCESS):
            continue
        registered = messages.parseRegistered(answer)
        if registered.secret is not None:
            secret = registered.secret
        elif registered.nonce is not None and secret is not None:
            secret = messages.nextSecret(secret, registered.nonce)
    return secret


def provenRegistration(server, transport, *args, **kwargs):
    """
    A registration from C{transport} that echoes the cookie C{server} gives
    the address it will see: a port-preserving NAT's public address, or the
    host's own.
    """
    host = transport.host
    public = host.behind.publicAddress if host.behind is not None else host.address
    return registration(*args, cookie=server.cookies.issue((public, transport.port)), **kwargs)


def register(server, transport, *args, **kwargs):
    """
    Send C{server} a L{provenRegistration}.
    """
    transport.write(provenRegistration(server, transport, *args, **kwargs), SERVER)


#: The name secret L{answerRegistration} gives.
NAME_SECRET = b"s" * messages.SECRET_BYTES


def answerRegistration(serverPort, datagrams, address, secret=NAME_SECRET):
    """
    Answer, from C{serverPort}, the last registration among C{datagrams},
    giving the name C{secret}, so that the peer at C{address} takes the
    introductions signed with it.
    """
    request = [
        m
        for m in map(stun.decode, datagrams)
        if (m.method, m.messageClass) == (messages.REGISTER, stun.REQUEST)
    ][-1]
    serverPort.write(
        messages.encodeRegistered(request.transactionID, address, 60, None, None, secret),
        address,
    )


class World:
    """
    A stage manager on the public internet and two peers, alice and bob,
    each behind a NAT of its own (or none), or both behind one NAT.
    """

    def __init__(
        self,
        natA=None,
        natB=None,
        sameNAT=None,
        latency=0.05,
        loss=0.0,
        interval=20.0,
        seed=0,
        **punchSettings,
    ):
        self.network = Network(latency=latency, loss=loss, seed=seed)
        self.seed = seed
        self.clock = self.network.clock
        self.interval = interval
        self.punchSettings = punchSettings
        self.serverHost = self.network.host(SERVER[0])
        self.server = self.startServer()
        if sameNAT is not None:
            self.natA = self.natB = self.network.nat("198.51.100.1", **sameNAT)
            self.aliceHost = self.network.host("10.0.1.2", behind=self.natA)
            self.bobHost = self.network.host("10.0.1.3", behind=self.natA)
        else:
            self.natA, self.aliceHost = self._site(natA, "198.51.100.1", "198.51.100.7", "10.0.1.2")
            self.natB, self.bobHost = self._site(natB, "203.0.113.1", "203.0.113.7", "10.0.2.2")
        self.events = {}
        self.alice = self.bob = None

    def _site(self, nat, natAddress, publicAddress, privateAddress):
        if nat is None:
            return None, self.network.host(publicAddress)
        box = self.network.nat(natAddress, **nat)
        return box, self.network.host(privateAddress, behind=box)

    def startServer(self):
        server = StageManagerProtocol(self.serverHost, Phonebook(100, 3 * self.interval))
        self.serverPort = self.serverHost.listenUDP(SERVER[1], server)
        return server

    def startPeer(self, name, wants, port):
        host = self.aliceHost if name == "alice" else self.bobHost
        peer = PeerProtocol(
            host,
            SERVER,
            name,
            wants,
            localHosts=(host.address,),
            interval=self.interval,
            listenUDP=host.listenUDP,
            # The jitter of registrations and the ports probed, drawn the
            # same in every run.
            random=random.Random(f"{self.seed} {name}"),
            **self.punchSettings,
        )
        events = self.events[name] = []
        for method in ("pathUp", "punchFailed", "pathLost"):
            self._record(peer, method, events)
        transport = host.listenUDP(port, peer)
        setattr(self, name, peer)
        setattr(self, name + "Port", transport)
        return peer

    def _record(self, peer, method, events):
        original = getattr(peer, method)

        def recorded(punch):
            events.append((method, self.clock.seconds(), punch.selected))
            original(punch)

        setattr(peer, method, recorded)

    def start(self, gap=1.0):
        """
        Start alice, then bob C{gap} seconds later.

        @return: The time bob sent his first registration.
        """
        self.startPeer("alice", "bob", 5000)
        self.network.advance(gap)
        secondRegistration = self.clock.seconds()
        self.startPeer("bob", "alice", 6000)
        return secondRegistration

    def when(self, name, method):
        """
        @return: The times the peer C{name} had C{method} called: one of
            C{"pathUp"}, C{"punchFailed"}, C{"pathLost"}.
        """
        return [t for m, t, _ in self.events[name] if m == method]

    def serverRoundTrip(self, host, nat):
        """
        @return: The time from C{host}, behind C{nat} (or none), to the
            stage manager and back.
        """
        links = [host.latency, self.serverHost.latency] + ([nat.latency] if nat else [])
        return 2 * sum(links)
