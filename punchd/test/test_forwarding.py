"""
Tests for L{punchd.forwarding}: UDP forwarding between a local port and a
path.
"""

import socket
from errno import EAGAIN, EPERM

from twisted.internet.address import IPv4Address
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from punchd import peer_tap
from punchd.forwarding import (
    BUFFER_FULL,
    NO_LOCAL_PROGRAM,
    NO_PATH,
    TOO_LARGE,
    Forwarder,
)
from punchd.greeter import Greeter
from punchd.interfaces import IPath, IPathObserver, IPathReceiver
from punchd.peer import PeerProtocol
from punchd.punching import LOST, PUBLIC, STOPPED, UP, Candidate
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.test.helpers import SERVER
from punchd.testing import Network, portRestrictedCone

#: The contact's address on the fake path.
CONTACT = ("203.0.113.1", 6000)
FORWARD_PORT = 51821
PROGRAM_PORT = 51820
PEER = ["--server", "127.0.0.1:8080", "--name", "alice", "--peer", "bob"]


@implementer(IPath)
class FakePath:
    """
    A path that is up and records what is written to it, with the
    exceptions L{IPath.write} raises.

    @ivar written: The datagrams written, in order.
    @ivar raising: An exception for the next writes to raise, or L{None}.
    """

    rtt = 0.01
    kind = PUBLIC
    family = "IPv4"

    def __init__(self, peerName="bob", maxPayload=1024):
        self.peerName = peerName
        self.state = UP
        self.selected = Candidate(CONTACT, PUBLIC, lambda datagram, address: None)
        self.maxPayload = maxPayload
        self.written = []
        self.raising = None

    def write(self, data):
        if self.raising is not None:
            raise self.raising
        if len(data) > self.maxPayload:
            raise ValueError(f"at most {self.maxPayload} bytes, not {len(data)}")
        if self.state != UP:
            raise RuntimeError(f"the path is {self.state}, not up")
        self.written.append(data)

    def getPeer(self):
        return IPv4Address("UDP", *CONTACT) if self.state == UP else None

    def start(self):
        pass

    def handle(self, datagram, message, source):
        return False

    def stop(self):
        self.state = STOPPED


class Program(DatagramProtocol):
    """
    A local program: records each datagram it receives with its source.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, datagram, address):
        self.received.append((datagram, address))


class ForwarderTestCase(SynchronousTestCase):
    """
    A forwarder on a simulated host's port, a local program beside it, and
    a fake path.
    """

    deliver = True

    def setUp(self):
        self.network = Network(latency=0)
        self.host = self.network.host("10.0.1.2")
        self.programAddress = (self.host.address, PROGRAM_PORT)
        self.forwardAddress = (self.host.address, FORWARD_PORT)
        self.forwarder = Forwarder(
            self.host, "bob", deliver=self.programAddress if self.deliver else None
        )
        self.host.listenUDP(FORWARD_PORT, self.forwarder)
        self.program = Program()
        self.programPort = self.host.listenUDP(PROGRAM_PORT, self.program)
        self.path = FakePath()

    def fromProgram(self, data, port=None):
        """
        Send C{data} from the local program (or another port) to the
        forwarding port, and let it arrive.
        """
        transport = self.programPort
        if port is not None:
            transport = self.host.listenUDP(port, Program())
        transport.write(data, self.forwardAddress)
        self.network.flush()

    def fromContact(self, data):
        """
        Hand the forwarder C{data} from the contact, and let what it sends
        arrive.
        """
        self.forwarder.dataReceived(self.path, data, CONTACT)
        self.network.flush()


class ForwarderTests(ForwarderTestCase):
    def test_interfaces(self):
        """
        A forwarder watches a path and takes what it brings; the fake path
        is a path.
        """
        verifyObject(IPathObserver, self.forwarder)
        verifyObject(IPathReceiver, self.forwarder)
        verifyObject(IPath, self.path)

    def test_localDatagramsGoOverThePath(self):
        """
        Every datagram the local program sends to the forwarding port is
        written to the path that is up, unchanged and in order.
        """
        self.forwarder.pathUp(self.path)
        self.fromProgram(b"one")
        self.fromProgram(b"\x00two\xff")
        self.assertEqual(self.path.written, [b"one", b"\x00two\xff"])
        self.assertEqual(self.forwarder.forwarded, 2)

    def test_contactDatagramsDelivered(self):
        """
        A datagram from the contact goes to the C{deliver} address, from the
        forwarding port, so that replies come back through it.
        """
        self.forwarder.pathUp(self.path)
        self.fromContact(b"reply")
        self.assertEqual(self.program.received, [(b"reply", self.forwardAddress)])
        self.assertEqual(self.forwarder.delivered, 1)

    def test_deliverIgnoresOtherSenders(self):
        """
        With a C{deliver} address, a datagram from another local program is
        forwarded but does not change where the contact's datagrams go.
        """
        self.forwarder.pathUp(self.path)
        self.fromProgram(b"from elsewhere", port=40000)
        self.fromContact(b"reply")
        self.assertEqual(self.path.written, [b"from elsewhere"])
        self.assertEqual(self.program.received, [(b"reply", self.forwardAddress)])

    def test_droppedWithoutAPath(self):
        """
        A datagram that arrives before any path is up is dropped and
        counted, not queued: it is not written when the path comes up.
        """
        self.fromProgram(b"early")
        self.forwarder.pathUp(self.path)
        self.assertEqual(self.path.written, [])
        self.assertEqual((self.forwarder.drops.counts, self.forwarder.forwarded), ({NO_PATH: 1}, 0))

    def test_droppedAfterThePathIsLost(self):
        """
        Once the path is lost, datagrams are dropped as having no path, and
        the next path to come up carries the ones after it.
        """
        self.forwarder.pathUp(self.path)
        self.path.state = LOST
        self.forwarder.pathLost(self.path)
        self.fromProgram(b"lost")
        second = FakePath()
        self.forwarder.pathUp(second)
        self.fromProgram(b"found")
        self.assertEqual((self.path.written, second.written), ([], [b"found"]))
        self.assertEqual(self.forwarder.drops.counts, {NO_PATH: 1})

    def test_droppedOnAPathNoLongerUp(self):
        """
        A path replaced or stopped without a word refuses the write, and the
        datagram is counted as having no path.
        """
        self.forwarder.pathUp(self.path)
        self.path.stop()
        self.fromProgram(b"x")
        self.assertEqual(self.forwarder.drops.counts, {NO_PATH: 1})

    def test_lossOfAnotherPathIgnored(self):
        """
        The loss of a path other than the one in use does not stop the
        forwarding.
        """
        old = FakePath()
        self.forwarder.pathUp(self.path)
        self.forwarder.pathLost(old)
        self.forwarder.punchFailed(old)
        self.fromProgram(b"still")
        self.assertEqual(self.path.written, [b"still"])

    def test_movedPathKeepsForwarding(self):
        """
        A path that moves to another address carries on.
        """
        self.forwarder.pathUp(self.path)
        previous = self.path.selected
        self.path.selected = Candidate(("203.0.113.1", 6001), PUBLIC, lambda d, a: None)
        self.forwarder.pathMoved(self.path, previous)
        self.fromProgram(b"moved")
        self.assertEqual(self.path.written, [b"moved"])

    def test_oversizedDropped(self):
        """
        A datagram larger than the path carries is dropped and counted by
        its own reason, and the next one that fits goes through.
        """
        self.forwarder.pathUp(self.path)
        self.fromProgram(b"x" * 1025)
        self.fromProgram(b"x" * 1024)
        self.assertEqual(self.path.written, [b"x" * 1024])
        self.assertEqual(self.forwarder.drops.counts, {TOO_LARGE: 1})

    def test_fullSendBufferDropped(self):
        """
        A datagram the peer's socket has no room for is counted as dropped
        rather than raised from the protocol; another error is raised.
        """
        self.forwarder.pathUp(self.path)
        self.path.raising = OSError(EAGAIN, "Resource temporarily unavailable")
        self.forwarder.datagramReceived(b"x", self.programAddress)
        self.assertEqual(self.forwarder.drops.counts, {BUFFER_FULL: 1})
        self.path.raising = OSError(EPERM, "Operation not permitted")
        self.assertRaises(OSError, self.forwarder.datagramReceived, b"x", self.programAddress)

    def test_dropsLoggedAtABoundedRate(self):
        """
        A flood of datagrams with no path is logged once, then at most once
        every ten seconds with the number dropped since, by its named
        fields.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        for _ in range(1000):
            self.forwarder.datagramReceived(b"x", self.programAddress)
        self.network.advance(10)
        self.forwarder.datagramReceived(b"x", self.programAddress)
        warnings = [e for e in events if e["log_format"].startswith("Dropped a datagram")]
        self.assertEqual(
            [(e["reason"], e["unreported"], e["total"]) for e in warnings],
            [(NO_PATH, 1, 1), (NO_PATH, 1000, 1001)],
        )
        self.assertEqual(self.forwarder.drops.counts, {NO_PATH: 1001})

    def test_stopLogsTheCounts(self):
        """
        When it stops, it forgets the path and logs how many datagrams went
        each way and how many were dropped, by reason.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.forwarder.pathUp(self.path)
        self.fromProgram(b"a")
        self.fromProgram(b"x" * 2000)
        self.fromContact(b"b")
        self.forwarder.stop()
        self.fromProgram(b"after")
        [summary] = [e for e in events if e["log_format"].startswith("Forwarded")]
        self.assertEqual(
            (summary["forwarded"], summary["delivered"], summary["peer"], summary["dropped"]),
            (1, 1, "bob", f"1 ({TOO_LARGE})"),
        )
        self.assertEqual(self.path.written, [b"a"])


class LastSenderTests(ForwarderTestCase):
    """
    Without a C{deliver} address.
    """

    deliver = False

    def test_deliveredToTheLastSender(self):
        """
        Datagrams from the contact go to the local program that last sent
        to the forwarding port, from the forwarding port.
        """
        self.forwarder.pathUp(self.path)
        self.fromProgram(b"first")
        self.fromContact(b"to the program")
        other = self.host.listenUDP(40000, Program())
        other.write(b"second", self.forwardAddress)
        self.network.flush()
        self.fromContact(b"to the other")
        self.assertEqual(self.program.received, [(b"to the program", self.forwardAddress)])
        self.assertEqual(other.protocol.received, [(b"to the other", self.forwardAddress)])

    def test_senderRememberedWithoutAPath(self):
        """
        A local program that sends while no path is up is still where the
        contact's datagrams go once one is.
        """
        self.fromProgram(b"early")
        self.forwarder.pathUp(self.path)
        self.fromContact(b"reply")
        self.assertEqual(self.program.received, [(b"reply", self.forwardAddress)])

    def test_noSenderYet(self):
        """
        A datagram from the contact before any local program has sent is
        dropped and counted.
        """
        self.forwarder.pathUp(self.path)
        self.fromContact(b"nobody")
        self.assertEqual(self.program.received, [])
        self.assertEqual(
            (self.forwarder.drops.counts, self.forwarder.delivered), ({NO_LOCAL_PROGRAM: 1}, 0)
        )


class ForwardingThroughNATsTests(SynchronousTestCase):
    """
    Peers behind port-restricted cone NATs of their own on the simulated
    network, each with a forwarder and a local program for each contact, as
    C{punch-peer --forward} wires them.
    """

    def setUp(self):
        self.network = Network(latency=0.05)
        serverHost = self.network.host(SERVER[0])
        serverHost.listenUDP(SERVER[1], StageManagerProtocol(serverHost, Phonebook(100, 60)))
        self.sites = 0

    def site(self, name, contacts, deliver):
        """
        Start the peer C{name} behind a NAT of its own, forwarding a port
        for each of its C{contacts}, with a local program beside each.

        @param deliver: Whether each forwarder delivers to its program's
            address, or to the last sender.
        @return: The peer's port, and for each contact the address of its
            forwarding port and the program's port.
        """
        self.sites += 1
        nat = self.network.nat(f"198.51.100.{self.sites}", **portRestrictedCone())
        host = self.network.host(f"10.0.{self.sites}.2", behind=nat)
        forwards, forwarders = {}, {}
        for i, contact in enumerate(contacts):
            program = host.listenUDP(PROGRAM_PORT - i, Program())
            forwarder = forwarders[contact] = Forwarder(
                host, contact, deliver=(host.address, program.port) if deliver else None
            )
            host.listenUDP(FORWARD_PORT + i, forwarder)
            forwards[contact] = ((host.address, FORWARD_PORT + i), program)
        peer = PeerProtocol(
            host, SERVER, name, tuple(contacts), localHosts=(host.address,),
            applications=forwarders,
        )
        return host.listenUDP(5000, peer), forwards

    def send(self, forwards, contact, data):
        """
        Have the program beside the forwarding port for C{contact} send
        C{data} to it, and let it arrive.
        """
        forwardAddress, program = forwards[contact]
        program.write(data, forwardAddress)
        self.network.advance(1)

    def received(self, forwards, contact):
        """
        What the program beside the forwarding port for C{contact} received
        from that port.
        """
        forwardAddress, program = forwards[contact]
        received = program.protocol.received
        self.assertEqual({source for _, source in received} - {forwardAddress}, set())
        return [data for data, _ in received]

    def test_programsTalkOverThePath(self):
        """
        What alice's program sends to its forwarding port reaches bob's
        program at its C{deliver} address, and bob's reply comes back to
        alice's program, the last sender; nothing else comes out, as no
        demo message is sent.  When the peers stop, so do the forwarders.
        """
        alicePort, alice = self.site("alice", ["bob"], deliver=False)
        self.network.advance(1)
        bobPort, bob = self.site("bob", ["alice"], deliver=True)
        self.network.advance(5)
        self.send(alice, "bob", b"ping")
        self.send(bob, "alice", b"pong")
        self.assertEqual(
            (self.received(bob, "alice"), self.received(alice, "bob")), ([b"ping"], [b"pong"])
        )
        for port in (alicePort, bobPort):
            port.stopListening()
            self.assertEqual(
                [c.application.path for c in port.protocol.contacts.values()], [None]
            )

    def test_twoContactsEachTheirForward(self):
        """
        alice, with two contacts, forwards a port of its own to each: what
        each contact's program sends reaches alice's program for that
        contact only, and each reply goes back to that contact alone.
        """
        alicePort, alice = self.site("alice", ["bob", "carol"], deliver=True)
        self.network.advance(1)
        _, bob = self.site("bob", ["alice"], deliver=False)
        _, carol = self.site("carol", ["alice"], deliver=False)
        self.network.advance(5)
        self.assertEqual(
            {n: c.path.state for n, c in alicePort.protocol.contacts.items()},
            {"bob": UP, "carol": UP},
        )
        self.send(bob, "alice", b"from bob")
        self.send(carol, "alice", b"from carol")
        self.send(alice, "bob", b"to bob")
        self.send(alice, "carol", b"to carol")
        self.assertEqual(
            {
                "alice's for bob": self.received(alice, "bob"),
                "alice's for carol": self.received(alice, "carol"),
                "bob's": self.received(bob, "alice"),
                "carol's": self.received(carol, "alice"),
            },
            {
                "alice's for bob": [b"from bob"],
                "alice's for carol": [b"from carol"],
                "bob's": [b"to bob"],
                "carol's": [b"to carol"],
            },
        )


def freePort(host="127.0.0.1"):
    """
    A UDP port free on C{host} a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def parse(argv):
    options = peer_tap.Options()
    options.parseOptions(argv)
    return options


class ForwardOptionsTests(SynchronousTestCase):
    """
    Tests for C{punch-peer --forward} and C{--deliver}.
    """

    def setUp(self):
        self.port = freePort()

    def test_none(self):
        """
        Without forwarding, both are empty.
        """
        options = parse(PEER)
        self.assertEqual((options["forward"], options["deliver"]), ({}, {}))

    def test_portOnly(self):
        """
        A bare port listens on 127.0.0.1, for the one contact; without
        C{--deliver}, there is no delivery address.
        """
        options = parse(PEER + ["--forward", str(self.port)])
        self.assertEqual(
            (options["forward"], options["deliver"]), ({"bob": ("127.0.0.1", self.port)}, {})
        )

    def test_hostAndDeliver(self):
        """
        A host is resolved, and so is the delivery address, each for the
        one contact.
        """
        options = parse(
            PEER + ["--forward", f"localhost:{self.port}", "--deliver", "localhost:51820"]
        )
        self.assertEqual(
            (options["forward"], options["deliver"]),
            ({"bob": ("127.0.0.1", self.port)}, {"bob": ("127.0.0.1", 51820)}),
        )

    def test_namedForm(self):
        """
        C{NAME=} names the contact, as it will among several C{--peer}s.
        """
        options = parse(
            PEER + ["--forward", f"bob={self.port}", "--deliver", "bob=127.0.0.1:51820"]
        )
        self.assertEqual(
            (options["forward"], options["deliver"]),
            ({"bob": ("127.0.0.1", self.port)}, {"bob": ("127.0.0.1", 51820)}),
        )

    def test_severalContacts(self):
        """
        With several C{--peer}s, each C{--forward} and C{--deliver} names
        its contact, and a contact may have none.
        """
        other = freePort()
        options = parse(
            PEER
            + ["--peer", "carol", "--peer", "dave", "--forward", f"bob={self.port}",
               "--forward", f"carol=127.0.0.1:{other}", "--deliver", "carol=127.0.0.1:51820"]
        )
        self.assertEqual(
            (options["peer"], options["forward"], options["deliver"]),
            (
                ["bob", "carol", "dave"],
                {"bob": ("127.0.0.1", self.port), "carol": ("127.0.0.1", other)},
                {"carol": ("127.0.0.1", 51820)},
            ),
        )

    def test_messageForTheOthers(self):
        """
        C{--message} goes with a C{--forward} when some contact is not
        forwarded: it is that contact's direct message.
        """
        options = parse(PEER + ["--peer", "carol", "--forward", f"bob={self.port}", "-m", "hi"])
        self.assertEqual((options["message"], list(options["forward"])), ("hi", ["bob"]))

    def test_errorsNameTheOption(self):
        """
        Each bad value or combination is a usage error that names its
        option and the value.
        """
        port = str(self.port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            used = taken.getsockname()[1]
            cases = [
                (["--forward", "x"], "--forward: port 'x' is not a number"),
                (["--forward", "0"], "--forward: port 0 is not between 1 and 65535"),
                (["--forward", "65536"], "--forward: port 65536 is not between 1 and 65535"),
                (["--forward", "127.0.0.1:x"],
                 "--forward: '127.0.0.1:x': port 'x' is not a number"),
                (["--forward", "nonexistent.invalid:51821"],
                 "--forward: cannot resolve 'nonexistent.invalid'"),
                (["--forward", str(used)],
                 f"--forward: cannot listen on 127.0.0.1:{used}: Address already in use"),
                (["--forward", f"192.0.2.1:{port}"],
                 f"--forward: cannot listen on 192.0.2.1:{port}: Cannot assign requested address"),
                (["--forward", port, "--port", port],
                 f"--forward: port {port} is this peer's own --port too"),
                (["--forward", f"carol={port}"],
                 "--forward: carol= names no --peer (the contacts: bob)"),
                (["--forward", port, "--forward", f"bob={used}"],
                 "--forward: given twice for bob"),
                (["--peer", "carol", "--forward", port],
                 f"--forward: {port} names no contact; with several --peer, write NAME={port}"),
                (["--peer", "carol", "--forward", f"bob={port}", "--forward", f"carol={port}"],
                 f"--forward: 127.0.0.1:{port} for both bob and carol"),
                (["--forward", port, "--message", "hi"],
                 "--message cannot go with a --forward for every --peer: the paths"
                 " carry the local programs' datagrams, not the direct message"),
                (["--forward", port, "--seed-compat"], "--forward cannot go with --seed-compat"),
                (["--deliver", "127.0.0.1:51820"],
                 "--deliver needs --forward: datagrams from the contact are delivered"
                 " from the forwarding port"),
                (["--forward", port, "--deliver", "127.0.0.1"],
                 "--deliver: '127.0.0.1' is not HOST:PORT"),
                (["--forward", port, "--deliver", "127.0.0.1:0"],
                 "--deliver: '127.0.0.1:0': port 0 is not between 1 and 65535"),
                (["--forward", port, "--deliver", "nonexistent.invalid:51820"],
                 "--deliver: cannot resolve 'nonexistent.invalid'"),
                (["--forward", port, "--deliver", "carol=127.0.0.1:51820"],
                 "--deliver: carol= names no --peer (the contacts: bob)"),
                (["--forward", port, "--deliver", "127.0.0.1:1", "--deliver", "127.0.0.1:2"],
                 "--deliver: given twice for bob"),
                (["--peer", "carol", "--forward", f"bob={port}",
                  "--deliver", "carol=127.0.0.1:51820"],
                 "--deliver: carol has no --forward, whose port delivers its datagrams"),
                (["--forward", port, "--deliver", f"127.0.0.1:{port}"],
                 f"--deliver: 127.0.0.1:{port} is a --forward port itself"),
                (["--forward", port, "--deliver", "192.0.2.1:51820"],
                 "--deliver: 192.0.2.1 is not on this machine, and --forward listens on"
                 " 127.0.0.1; give --forward a HOST that reaches it"),
                (["--forward", port, "--deliver", "[::1]:51820"],
                 "--deliver: ::1 is not of the family of 127.0.0.1, where --forward listens"),
            ]
            for extra, message in cases:
                e = self.assertRaises(usage.UsageError, parse, PEER + extra)
                self.assertTrue(str(e).startswith(message), f"{str(e)!r} for {extra}")
        e = self.assertRaises(
            usage.UsageError, parse, ["--server", "127.0.0.1:8080", "--probe", "--forward", port]
        )
        self.assertEqual(str(e), "--forward cannot go with --probe")

    def test_makeService(self):
        """
        With C{--forward}, the service is the forwarding port, then the
        peer, whose application is the forwarder of that port, delivering
        where C{--deliver} says; it speaks no original client's dialect.
        """
        options = parse(PEER + ["--forward", str(self.port), "--deliver", "127.0.0.1:51820"])
        service = peer_tap.makeService(options, reactor=Clock())
        forward, peer = list(service)
        self.assertEqual(
            (forward.name, forward.port, forward.interface, peer.name),
            ("forward bob", self.port, "127.0.0.1", "peer"),
        )
        forwarder = forward.protocol
        self.assertIsInstance(forwarder, Forwarder)
        self.assertIs(peer.protocol.application, forwarder)
        self.assertEqual(
            (forwarder.peerName, forwarder.deliver, peer.protocol.dialects),
            ("bob", ("127.0.0.1", 51820), ()),
        )

    def test_makeServiceWithoutDeliver(self):
        """
        Without C{--deliver}, the forwarder delivers to the last sender.
        """
        options = parse(PEER + ["--forward", str(self.port)])
        forward, _ = list(peer_tap.makeService(options, reactor=Clock()))
        self.assertIsNone(forward.protocol.deliver)

    def test_makeServiceForSeveral(self):
        """
        Each contact forwarded has a forwarding port of its own, whose
        forwarder is the application on that contact's paths; a contact not
        forwarded has the greeter of the direct message.
        """
        other = freePort()
        options = parse(
            PEER
            + ["--peer", "carol", "--peer", "dave", "--forward", f"bob={self.port}",
               "--forward", f"carol={other}", "--deliver", "carol=127.0.0.1:51820",
               "-m", "hi"]
        )
        service = peer_tap.makeService(options, reactor=Clock())
        forwards = {s.name: s for s in service if s.name != "peer"}
        contacts = service.getServiceNamed("peer").protocol.contacts
        self.assertEqual(
            {n: (s.port, s.protocol.peerName, s.protocol.deliver) for n, s in forwards.items()},
            {
                "forward bob": (self.port, "bob", None),
                "forward carol": (other, "carol", ("127.0.0.1", 51820)),
            },
        )
        self.assertIs(contacts["bob"].application, forwards["forward bob"].protocol)
        self.assertIs(contacts["carol"].application, forwards["forward carol"].protocol)
        self.assertIsInstance(contacts["dave"].application, Greeter)
        self.assertEqual(contacts["dave"].application.text, "hi")
