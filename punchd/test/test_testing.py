"""
Tests for L{punchd.testing}, the in-memory network and NAT simulator.
"""

from zope.interface.verify import verifyObject

from twisted.application.internet import UDPServer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import (
    CannotListenError,
    InvalidAddressError,
    MessageLengthError,
)
from twisted.internet.interfaces import IReactorTime, IReactorUDP, IUDPTransport
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock, LoopingCall
from twisted.trial.unittest import SynchronousTestCase

from punchd.test.optional import given, settings, st
from punchd.testing import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    DELIVERED,
    ENDPOINT_INDEPENDENT,
    FILTERED,
    HAIRPINNING_DISABLED,
    LOST,
    NO_MAPPING,
    NO_ROUTE,
    NOT_CONNECTED,
    PORT_UNREACHABLE,
    PRESERVING,
    RANDOM,
    SENDER_CLOSED,
    SEQUENTIAL,
    Datagram,
    Network,
    fullCone,
    portRestrictedCone,
    restrictedCone,
    symmetric,
)

SERVER = "198.51.100.1"
OTHER_SERVER = "198.51.100.2"
NAT_A = "203.0.113.1"
NAT_B = "203.0.113.2"
ALICE = "192.168.1.2"
CAROL = "192.168.1.3"
BOB = "192.168.1.2"


class Recorder(DatagramProtocol):
    """
    Remembers what it receives, and when.

    @ivar received: C{(data, source)} of each datagram received.
    @ivar times: The clock's time at each datagram received.
    """

    noisy = False

    def __init__(self, clock):
        self.clock = clock
        self.received = []
        self.times = []
        self.started = False
        self.stopped = False

    def startProtocol(self):
        self.started = True

    def stopProtocol(self):
        self.stopped = True

    def datagramReceived(self, data, addr):
        self.received.append((data, addr))
        self.times.append(self.clock.seconds())


def listen(host, port=0, **kwargs):
    """
    Listen on C{host} with a L{Recorder}.

    @return: The recorder and the port.
    """
    recorder = Recorder(host)
    return recorder, host.listenUDP(port, recorder, **kwargs)


class InterfaceTests(SynchronousTestCase):
    """
    The fakes provide the interfaces they stand in for.
    """

    def test_hostIsReactorUDP(self):
        """
        A host provides IReactorUDP.
        """
        self.assertTrue(verifyObject(IReactorUDP, Network().host(SERVER)))

    def test_hostIsReactorTime(self):
        """
        A host provides IReactorTime.
        """
        self.assertTrue(verifyObject(IReactorTime, Network().host(SERVER)))

    def test_portIsUDPTransport(self):
        """
        A port provides IUDPTransport.
        """
        _, port = listen(Network().host(SERVER))
        self.assertTrue(verifyObject(IUDPTransport, port))


class ListenUDPTests(SynchronousTestCase):
    """
    L{punchd.testing.Host.listenUDP} and
    L{punchd.testing.FakeUDPPort.stopListening}.
    """

    def setUp(self):
        self.network = Network()
        self.host = self.network.host(SERVER)

    def test_startsProtocol(self):
        """
        Listening connects the protocol to the port and starts it.
        """
        recorder, port = listen(self.host, 3478)
        self.assertIs(recorder.transport, port)
        self.assertTrue(recorder.started)

    def test_getHostIsHostAddress(self):
        """
        A port listening on all interfaces reports the host's address.
        """
        _, port = listen(self.host, 3478)
        self.assertEqual(port.getHost(), IPv4Address("UDP", SERVER, 3478))

    def test_ephemeralPorts(self):
        """
        Port 0 picks the free ephemeral ports in turn.
        """
        _, first = listen(self.host)
        _, second = listen(self.host)
        self.assertEqual(
            (first.getHost().port, second.getHost().port), (32768, 32769)
        )

    def test_portInUse(self):
        """
        Listening on a port already in use raises CannotListenError.
        """
        listen(self.host, 3478)
        self.assertRaises(CannotListenError, listen, self.host, 3478)

    def test_unknownInterface(self):
        """
        Listening on an address the host does not have raises
        CannotListenError.
        """
        self.assertRaises(
            CannotListenError, listen, self.host, 3478, interface="10.9.9.9"
        )

    def test_stopListeningStopsProtocol(self):
        """
        stopListening stops the protocol and returns a fired Deferred.
        """
        recorder, port = listen(self.host, 3478)
        self.assertIsNone(self.successResultOf(port.stopListening()))
        self.assertTrue(recorder.stopped)
        self.assertIsNone(recorder.transport)

    def test_stopListeningTwice(self):
        """
        Stopping a port that has stopped returns None.
        """
        _, port = listen(self.host, 3478)
        port.stopListening()
        self.assertIsNone(port.stopListening())

    def test_stopListeningFreesPort(self):
        """
        After stopListening the port number can be listened on again.
        """
        _, port = listen(self.host, 3478)
        port.stopListening()
        _, again = listen(self.host, 3478)
        self.assertEqual(again.getHost().port, 3478)

    def test_stoppedPortReceivesNothing(self):
        """
        A datagram to a port that stopped listening is unreachable.
        """
        recorder, port = listen(self.host, 3478)
        _, sender = listen(self.network.host(OTHER_SERVER))
        port.stopListening()
        sender.write(b"hello", (SERVER, 3478))
        self.network.flush()
        self.assertEqual(recorder.received, [])
        self.assertEqual([d.outcome for d in self.network.traffic], [PORT_UNREACHABLE])

    def test_writeAfterStopListening(self):
        """
        A write to a port that stopped listening is dropped.
        """
        recorder, _ = listen(self.network.host(OTHER_SERVER), 3478)
        _, port = listen(self.host)
        port.stopListening()
        port.write(b"late", (OTHER_SERVER, 3478))
        self.network.flush()
        self.assertEqual(recorder.received, [])
        self.assertEqual([d.outcome for d in self.network.traffic], [SENDER_CLOSED])

    def test_stopProtocolMayWrite(self):
        """
        A protocol may still write from stopProtocol, as on a real port.
        """
        recorder, _ = listen(self.network.host(OTHER_SERVER), 3478)

        class Goodbye(DatagramProtocol):
            noisy = False

            def startProtocol(self):
                self.port = self.transport

            def stopProtocol(self):
                self.port.write(b"bye", (OTHER_SERVER, 3478))

        port = self.host.listenUDP(0, Goodbye())
        port.stopListening()
        self.network.flush()
        self.assertEqual(recorder.received, [(b"bye", (SERVER, 32768))])

    def test_udpServer(self):
        """
        A host is the reactor of a UDPServer service.
        """
        recorder = Recorder(self.host)
        service = UDPServer(3478, recorder, reactor=self.host)
        service.startService()
        self.assertEqual(recorder.transport.getHost().port, 3478)
        self.successResultOf(service.stopService())
        self.assertTrue(recorder.stopped)


class TimeTests(SynchronousTestCase):
    """
    A host's time is the network clock's.
    """

    def test_seconds(self):
        """
        seconds is the clock's time.
        """
        clock = Clock()
        clock.advance(12)
        self.assertEqual(Network(clock).host(SERVER).seconds(), 12)

    def test_callLater(self):
        """
        callLater runs on the network clock.
        """
        network = Network()
        calls = []
        network.host(SERVER).callLater(2, calls.append, "ran")
        network.clock.advance(2)
        self.assertEqual(calls, ["ran"])

    def test_delayedCallsOfThisHostOnly(self):
        """
        getDelayedCalls lists the pending calls made through that host only.
        """
        network = Network()
        server, other = network.host(SERVER), network.host(OTHER_SERVER)
        call = server.callLater(1, lambda: None)
        other.callLater(1, lambda: None)
        server.callLater(0, lambda: None).cancel()
        self.assertEqual(server.getDelayedCalls(), [call])

    def test_loopingCall(self):
        """
        A host can be a LoopingCall's clock, and its calls stop with it.
        """
        host = Network().host(SERVER)
        ticks = []
        loop = LoopingCall(ticks.append, "tick")
        loop.clock = host
        loop.start(1)
        host.network.advance(2)
        loop.stop()
        self.assertEqual((ticks, host.getDelayedCalls()), (["tick"] * 3, []))


class WriteTests(SynchronousTestCase):
    """
    L{punchd.testing.FakeUDPPort.write} and C{connect}.
    """

    def setUp(self):
        self.network = Network()
        self.server = self.network.host(SERVER)
        self.recorder, _ = listen(self.server, 3478)
        self.client = self.network.host(OTHER_SERVER)
        _, self.port = listen(self.client, 5000)

    def test_rejectsHostname(self):
        """
        Writing to a host name raises InvalidAddressError.
        """
        self.assertRaises(
            InvalidAddressError, self.port.write, b"x", ("example.com", 3478)
        )

    def test_rejectsText(self):
        """
        Writing text rather than bytes raises TypeError.
        """
        self.assertRaises(TypeError, self.port.write, "x", (SERVER, 3478))

    def test_rejectsTooLong(self):
        """
        A datagram longer than UDP can carry raises MessageLengthError.
        """
        self.assertRaises(
            MessageLengthError, self.port.write, b"x" * 65508, (SERVER, 3478)
        )

    def test_unconnectedNeedsAddress(self):
        """
        Writing without an address on an unconnected port raises ValueError.
        """
        self.assertRaises(ValueError, self.port.write, b"x")

    def test_connectedWrite(self):
        """
        A connected port writes to its connected address without being told.
        """
        self.port.connect(SERVER, 3478)
        self.port.write(b"hello")
        self.network.flush()
        self.assertEqual(self.recorder.received, [(b"hello", (OTHER_SERVER, 5000))])

    def test_connectedReceivesOnlyFromPeer(self):
        """
        A connected port drops datagrams from any other address.
        """
        recorder, port = listen(self.network.host("198.51.100.3"), 6000)
        port.connect(SERVER, 3478)
        self.port.write(b"stranger", ("198.51.100.3", 6000))
        self.network.flush()
        self.assertEqual(recorder.received, [])
        self.assertEqual(self.network.traffic[0].outcome, NOT_CONNECTED)

    def test_truncated(self):
        """
        A datagram longer than the receiver's maxPacketSize is cut short.
        """
        recorder, _ = listen(self.server, 3479, maxPacketSize=4)
        self.port.write(b"abcdefgh", (SERVER, 3479))
        self.network.flush()
        self.assertEqual(recorder.received, [(b"abcd", (OTHER_SERVER, 5000))])

    def test_loopback(self):
        """
        A datagram to the host's own address arrives without delay.
        """
        network = Network(latency=1)
        host = network.host(SERVER)
        recorder, port = listen(host, 3478)
        port.write(b"me", (SERVER, 3478))
        network.clock.advance(0)
        self.assertEqual(recorder.received, [(b"me", (SERVER, 3478))])

    def test_protocolErrorLogged(self):
        """
        An exception from datagramReceived is logged and later datagrams
        still arrive.
        """

        class Broken(Recorder):
            def datagramReceived(self, data, addr):
                Recorder.datagramReceived(self, data, addr)
                1 / 0

        broken = Broken(self.server)
        self.server.listenUDP(3479, broken)
        self.port.write(b"one", (SERVER, 3479))
        self.port.write(b"two", (SERVER, 3479))
        self.network.flush()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertEqual([data for data, _ in broken.received], [b"one", b"two"])


class DualStackTests(SynchronousTestCase):
    """
    A port listening on C{"::"} behaves like a dual-stack socket.
    """

    def setUp(self):
        self.network = Network()
        server = self.network.host(SERVER)
        self.recorder, self.port = listen(server, 3478, interface="::")
        self.client, self.clientPort = listen(self.network.host(OTHER_SERVER), 5000)

    def test_getHost(self):
        """
        It reports an IPv6 address.
        """
        self.assertEqual(
            self.port.getHost(), IPv6Address("UDP", "::ffff:" + SERVER, 3478)
        )

    def test_mappedSource(self):
        """
        It reports an IPv4 sender as an IPv4-mapped IPv6 address.
        """
        self.clientPort.write(b"hi", (SERVER, 3478))
        self.network.flush()
        self.assertEqual(
            self.recorder.received, [(b"hi", ("::ffff:" + OTHER_SERVER, 5000))]
        )

    def test_writeMapped(self):
        """
        It writes to IPv4-mapped addresses.
        """
        self.port.write(b"hi", ("::ffff:" + OTHER_SERVER, 5000))
        self.network.flush()
        self.assertEqual(self.client.received, [(b"hi", (SERVER, 3478))])

    def test_rejectsIPv4(self):
        """
        It refuses a plain IPv4 address, as a real IPv6 port does.
        """
        self.assertRaises(
            InvalidAddressError, self.port.write, b"hi", (OTHER_SERVER, 5000)
        )


class DeliveryTests(SynchronousTestCase):
    """
    Datagrams across the public internet.
    """

    def test_arrivesAfterLatency(self):
        """
        A datagram arrives after the sum of the two links' latencies.
        """
        network = Network(latency=0.25)
        recorder, _ = listen(network.host(SERVER, latency=0.5), 3478)
        _, port = listen(network.host(OTHER_SERVER), 5000)
        port.write(b"hi", (SERVER, 3478))
        network.clock.advance(0.5)
        self.assertEqual(recorder.received, [])
        network.clock.advance(0.25)
        self.assertEqual(recorder.times, [0.75])

    def test_neverSynchronous(self):
        """
        Even without latency a datagram arrives only when the clock runs.
        """
        network = Network()
        recorder, _ = listen(network.host(SERVER), 3478)
        _, port = listen(network.host(OTHER_SERVER), 5000)
        port.write(b"hi", (SERVER, 3478))
        self.assertEqual(recorder.received, [])
        network.clock.advance(0)
        self.assertEqual(recorder.received, [(b"hi", (OTHER_SERVER, 5000))])

    def test_record(self):
        """
        A delivered datagram is recorded with its times, addresses and data.
        """
        network = Network(latency=0.125)
        server = network.host(SERVER)
        client = network.host(OTHER_SERVER)
        listen(server, 3478)
        _, port = listen(client, 5000)
        network.clock.advance(1)
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        self.assertEqual(
            network.traffic,
            [
                Datagram(
                    sentAt=1,
                    time=1.25,
                    sender=client,
                    source=(OTHER_SERVER, 5000),
                    destination=(SERVER, 3478),
                    data=b"hi",
                    outcome=DELIVERED,
                    where=server,
                    receivedFrom=(OTHER_SERVER, 5000),
                    deliveredTo=(SERVER, 3478),
                )
            ],
        )

    def test_noRoute(self):
        """
        A datagram to an address nobody has is dropped.
        """
        network = Network()
        _, port = listen(network.host(SERVER))
        port.write(b"hi", ("192.0.2.99", 1))
        network.flush()
        self.assertEqual(
            [(d.outcome, d.where) for d in network.dropped()], [(NO_ROUTE, None)]
        )

    def test_portUnreachable(self):
        """
        A datagram to a port nothing listens on is dropped at the host.
        """
        network = Network()
        server = network.host(SERVER)
        _, port = listen(network.host(OTHER_SERVER))
        port.write(b"hi", (SERVER, 9))
        network.flush()
        self.assertEqual(
            [(d.outcome, d.where) for d in network.dropped()],
            [(PORT_UNREACHABLE, server)],
        )

    def test_totalLoss(self):
        """
        A link with loss 1 drops every datagram, and says whose link it was.
        """
        network = Network()
        recorder, _ = listen(network.host(SERVER, loss=1), 3478)
        _, port = listen(network.host(OTHER_SERVER))
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        self.assertEqual(recorder.received, [])
        self.assertEqual(
            [(d.outcome, d.where.address) for d in network.traffic], [(LOST, SERVER)]
        )

    def test_lossIsSeeded(self):
        """
        Losses are random but the same for the same seed.
        """

        def outcomes(seed):
            network = Network(loss=0.25, seed=seed)
            listen(network.host(SERVER), 3478)
            _, port = listen(network.host(OTHER_SERVER))
            for _ in range(40):
                port.write(b"hi", (SERVER, 3478))
            network.flush()
            return [d.outcome for d in network.traffic]

        first = outcomes(7)
        self.assertEqual(first, outcomes(7))
        self.assertNotEqual(first, outcomes(8))
        self.assertEqual(set(first), {LOST, DELIVERED})

    def test_flush(self):
        """
        flush advances the clock to the last arrival.
        """
        network = Network(latency=0.25)
        recorder, _ = listen(network.host(SERVER), 3478)
        _, port = listen(network.host(OTHER_SERVER))
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        self.assertEqual(
            (network.clock.seconds(), network.inFlight(), len(recorder.received)),
            (0.5, 0, 1),
        )


def natted(
    mapping=ENDPOINT_INDEPENDENT, filtering=ADDRESS_AND_PORT_DEPENDENT, **kwargs
):
    """
    A network with alice behind a NAT and three public servers, each
    listening on two ports.

    @return: The network, the NAT, alice's recorder and port, and the
        servers' recorders and ports by C{(address, port)}.
    """
    network = Network()
    nat = network.nat(NAT_A, mapping=mapping, filtering=filtering, **kwargs)
    alice, alicePort = listen(network.host(ALICE, behind=nat), 5000)
    servers = {}
    for address in (SERVER, OTHER_SERVER, "198.51.100.3"):
        host = network.host(address)
        for number in (3478, 3479):
            servers[(address, number)] = listen(host, number)
    return network, nat, alice, alicePort, servers


class MappingTests(SynchronousTestCase):
    """
    When a NAT makes a new mapping.
    """

    def seen(self, mapping):
        """
        The source alice's datagrams to four destinations arrive from.
        """
        network, _, _, port, servers = natted(mapping=mapping)
        destinations = [
            (SERVER, 3478),
            (SERVER, 3479),
            (OTHER_SERVER, 3478),
            (OTHER_SERVER, 3479),
        ]
        for destination in destinations:
            port.write(b"hi", destination)
        network.flush()
        return [servers[d][0].received[0][1] for d in destinations]

    def test_sourceTranslated(self):
        """
        A datagram from behind a NAT arrives from the NAT's public address.
        """
        self.assertEqual(self.seen(ENDPOINT_INDEPENDENT)[0], (NAT_A, 5000))

    def test_endpointIndependent(self):
        """
        Endpoint-independent mapping uses one public port for every
        destination.
        """
        self.assertEqual(len(set(self.seen(ENDPOINT_INDEPENDENT))), 1)

    def test_addressDependent(self):
        """
        Address-dependent mapping uses one public port per destination
        address.
        """
        seen = self.seen(ADDRESS_DEPENDENT)
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[2], seen[3])
        self.assertNotEqual(seen[0], seen[2])

    def test_addressAndPortDependent(self):
        """
        Address-and-port-dependent mapping uses one public port per
        destination address and port.
        """
        self.assertEqual(len(set(self.seen(ADDRESS_AND_PORT_DEPENDENT))), 4)

    def test_mappingFor(self):
        """
        mappingFor gives the mapping of an internal address and port.
        """
        network, nat, _, port, _ = natted()
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        mapping = nat.mappingFor(ALICE, 5000)
        self.assertEqual(
            (mapping.internal, mapping.external, mapping.permissions),
            ((ALICE, 5000), (NAT_A, 5000), {(SERVER, 3478)}),
        )
        self.assertEqual(nat.mappings(), [mapping])

    def test_mappingForNothingYet(self):
        """
        mappingFor gives None before any datagram went out.
        """
        _, nat, _, _, _ = natted()
        self.assertIsNone(nat.mappingFor(ALICE, 5000))

    def test_mappingForRemote(self):
        """
        mappingFor picks out a destination's mapping, and wants one when
        there are several.
        """
        network, nat, _, port, servers = natted(mapping=ADDRESS_AND_PORT_DEPENDENT)
        port.write(b"hi", (SERVER, 3478))
        port.write(b"hi", (SERVER, 3479))
        network.flush()
        mapping = nat.mappingFor(ALICE, 5000, (SERVER, 3479))
        self.assertEqual(mapping.external, servers[(SERVER, 3479)][0].received[0][1])
        self.assertRaises(ValueError, nat.mappingFor, ALICE, 5000)

    def test_noMappingWithinNetwork(self):
        """
        A datagram between two hosts behind one NAT goes directly, from the
        private address, without a mapping.
        """
        network = Network(latency=0.25)
        nat = network.nat(NAT_A)
        _, alicePort = listen(network.host(ALICE, behind=nat), 5000)
        carol, _ = listen(network.host(CAROL, behind=nat, latency=0.125), 5000)
        alicePort.write(b"hi", (CAROL, 5000))
        network.flush()
        self.assertEqual(
            (carol.received, carol.times, nat.mappings()),
            ([(b"hi", (ALICE, 5000))], [0.375], []),
        )


class FilteringTests(SynchronousTestCase):
    """
    Who may send in through a mapping.
    """

    def admitted(self, filtering):
        """
        After alice sends to the first server's port 3478, which of the
        servers' ports get through to her.
        """
        network, _, alice, port, servers = natted(filtering=filtering)
        port.write(b"out", (SERVER, 3478))
        network.flush()
        for (address, number), (_, serverPort) in servers.items():
            serverPort.write(b"in", (NAT_A, 5000))
        network.flush()
        return [source for _, source in alice.received]

    def test_endpointIndependent(self):
        """
        Endpoint-independent filtering lets anyone in.
        """
        self.assertEqual(len(self.admitted(ENDPOINT_INDEPENDENT)), 6)

    def test_addressDependent(self):
        """
        Address-dependent filtering lets in any port of an address alice
        sent to.
        """
        self.assertEqual(
            self.admitted(ADDRESS_DEPENDENT), [(SERVER, 3478), (SERVER, 3479)]
        )

    def test_addressAndPortDependent(self):
        """
        Address-and-port-dependent filtering lets in only the address and
        port alice sent to.
        """
        self.assertEqual(self.admitted(ADDRESS_AND_PORT_DEPENDENT), [(SERVER, 3478)])

    def test_filteredRecorded(self):
        """
        A datagram turned away by filtering is recorded as filtered at the
        NAT.
        """
        network, nat, _, port, servers = natted()
        port.write(b"out", (SERVER, 3478))
        network.flush()
        servers[(SERVER, 3479)][1].write(b"in", (NAT_A, 5000))
        network.flush()
        self.assertEqual(
            [(d.outcome, d.where) for d in network.dropped()], [(FILTERED, nat)]
        )

    def test_unsolicited(self):
        """
        A datagram to a NAT's port with no mapping is dropped.
        """
        network, nat, alice, _, servers = natted(filtering=ENDPOINT_INDEPENDENT)
        servers[(SERVER, 3478)][1].write(b"in", (NAT_A, 5000))
        network.flush()
        self.assertEqual(alice.received, [])
        self.assertEqual(
            [(d.outcome, d.where) for d in network.dropped()], [(NO_MAPPING, nat)]
        )


class AllocationTests(SynchronousTestCase):
    """
    Which public port a new mapping gets.
    """

    def ports(self, allocation, seed=0):
        """
        The public ports of alice's port 5000 and carol's port 5000 towards
        one server, and alice's towards another.
        """
        network = Network(seed=seed)
        nat = network.nat(NAT_A, mapping=ADDRESS_DEPENDENT, allocation=allocation)
        _, alice = listen(network.host(ALICE, behind=nat), 5000)
        _, carol = listen(network.host(CAROL, behind=nat), 5000)
        alice.write(b"hi", (SERVER, 3478))
        carol.write(b"hi", (SERVER, 3478))
        alice.write(b"hi", (OTHER_SERVER, 3478))
        network.flush()
        return [m.external[1] for m in nat.mappings()]

    def test_preserving(self):
        """
        Preserving allocation keeps the internal port, or takes the next free
        one.
        """
        self.assertEqual(self.ports(PRESERVING), [5000, 5001, 5002])

    def test_sequential(self):
        """
        Sequential allocation counts up from 1024.
        """
        self.assertEqual(self.ports(SEQUENTIAL), [1024, 1025, 1026])

    def test_randomIsSeeded(self):
        """
        Random allocation gives different ports, the same for the same seed.
        """
        ports = self.ports(RANDOM, seed=1)
        self.assertEqual(len(set(ports)), 3)
        self.assertEqual(ports, self.ports(RANDOM, seed=1))
        self.assertNotEqual(ports, self.ports(RANDOM, seed=2))


class TimeoutTests(SynchronousTestCase):
    """
    Mappings expire unless outbound datagrams use them.
    """

    def setUp(self):
        self.network = Network()
        self.nat = self.network.nat(NAT_A, mappingTimeout=30, allocation=SEQUENTIAL)
        self.alice, self.port = listen(self.network.host(ALICE, behind=self.nat), 5000)
        self.server, self.serverPort = listen(self.network.host(SERVER), 3478)
        self.port.write(b"out", (SERVER, 3478))
        self.network.flush()
        self.external = self.nat.mappingFor(ALICE, 5000).external

    def later(self, seconds):
        self.network.clock.advance(seconds)
        self.network.flush()

    def test_expires(self):
        """
        A mapping is gone once no outbound datagram has used it for the
        timeout, and inbound datagrams then find no mapping.
        """
        self.later(29)
        self.assertIsNotNone(self.nat.mappingFor(ALICE, 5000))
        self.later(1)
        self.assertIsNone(self.nat.mappingFor(ALICE, 5000))
        self.serverPort.write(b"in", self.external)
        self.network.flush()
        self.assertEqual(self.network.traffic[-1].outcome, NO_MAPPING)

    def test_outboundRefreshes(self):
        """
        An outbound datagram keeps a mapping alive for another timeout.
        """
        self.later(20)
        self.port.write(b"out", (SERVER, 3478))
        self.later(20)
        self.serverPort.write(b"in", self.external)
        self.network.flush()
        self.assertEqual(self.alice.received, [(b"in", (SERVER, 3478))])

    def test_inboundDoesNotRefresh(self):
        """
        Inbound datagrams do not keep a mapping alive.
        """
        self.later(20)
        self.serverPort.write(b"in", self.external)
        self.later(10)
        self.assertEqual(
            (len(self.alice.received), self.nat.mappings()), (1, [])
        )

    def test_newMappingAfterExpiry(self):
        """
        After its mapping expired, an endpoint gets a new one, here on a new
        port.
        """
        self.later(30)
        self.port.write(b"out", (SERVER, 3478))
        self.network.flush()
        self.assertEqual(
            [source for _, source in self.server.received],
            [(NAT_A, 1024), (NAT_A, 1025)],
        )

    def test_preservingMayReuse(self):
        """
        A preserving NAT may give the same port again after expiry.
        """
        network, nat, _, port, _ = natted(mappingTimeout=30)
        port.write(b"out", (SERVER, 3478))
        network.clock.advance(30)
        port.write(b"out", (SERVER, 3478))
        network.flush()
        self.assertEqual(nat.mappingFor(ALICE, 5000).external, (NAT_A, 5000))

    def test_noTimeout(self):
        """
        Without a timeout mappings never expire.
        """
        network, nat, _, port, _ = natted()
        port.write(b"out", (SERVER, 3478))
        network.clock.advance(10**6)
        self.assertEqual(len(nat.mappings()), 1)


class HairpinningTests(SynchronousTestCase):
    """
    Datagrams from behind a NAT to its own public address.
    """

    def setUp(self):
        self.network = Network(latency=0.25)
        self.nat = self.network.nat(NAT_A, **restrictedCone())
        alice = self.network.host(ALICE, behind=self.nat)
        carol = self.network.host(CAROL, behind=self.nat)
        self.alice, self.alicePort = listen(alice, 5000)
        self.carol, self.carolPort = listen(carol, 6000)
        listen(self.network.host(SERVER), 3478)
        self.carolPort.write(b"register", (SERVER, 3478))
        self.alicePort.write(b"register", (SERVER, 3478))
        self.network.flush()
        self.network.traffic.clear()

    def test_hairpinning(self):
        """
        With hairpinning, a datagram to the NAT's public address reaches the
        host behind the mapping, from the sender's public address, crossing
        only the two hosts' links.
        """
        self.nat.hairpinning = True
        self.carolPort.write(b"out", (NAT_A, 5000))
        self.network.flush()
        self.alicePort.write(b"hairpin", (NAT_A, 6000))
        self.network.flush()
        [delivered] = self.network.delivered()
        self.assertEqual(self.carol.received, [(b"hairpin", (NAT_A, 5000))])
        self.assertEqual(delivered.time - delivered.sentAt, 0.5)

    def test_filtered(self):
        """
        A hairpinned datagram is filtered like any inbound one.
        """
        self.nat.hairpinning = True
        self.alicePort.write(b"hairpin", (NAT_A, 6000))
        self.network.flush()
        self.assertEqual([d.outcome for d in self.network.traffic], [FILTERED])

    def test_disabled(self):
        """
        Without hairpinning such a datagram is dropped.
        """
        self.carolPort.write(b"out", (NAT_A, 5000))
        self.alicePort.write(b"hairpin", (NAT_A, 6000))
        self.network.flush()
        self.assertEqual(self.carol.received, [])
        self.assertEqual(
            [d.outcome for d in self.network.traffic], [HAIRPINNING_DISABLED] * 2
        )


class TopologyTests(SynchronousTestCase):
    """
    Realms, addresses, and paths through NATs.
    """

    def test_pathLatency(self):
        """
        A path through a NAT takes the latency of each link it crosses.
        """
        network = Network(latency=0.125)
        nat = network.nat(NAT_A, latency=0.25)
        _, port = listen(network.host(ALICE, behind=nat, latency=0.5), 5000)
        server, _ = listen(network.host(SERVER, latency=1), 3478)
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        self.assertEqual(server.times, [1.75])

    def test_privateAddressesRepeat(self):
        """
        Two private networks may use the same address.
        """
        network = Network()
        alice = network.host(ALICE, behind=network.nat(NAT_A))
        bob = network.host(BOB, behind=network.nat(NAT_B))
        self.assertEqual(alice.address, bob.address)

    def test_addressTaken(self):
        """
        An address already taken in its realm raises ValueError.
        """
        network = Network()
        network.nat(NAT_A)
        self.assertRaises(ValueError, network.host, NAT_A)

    def test_notAnAddress(self):
        """
        A host's address must be an IPv4 address.
        """
        self.assertRaises(ValueError, Network().host, "alice")

    def test_badBehaviour(self):
        """
        An unknown behaviour raises ValueError.
        """
        self.assertRaises(ValueError, Network().nat, NAT_A, mapping="cone")

    def test_badLoss(self):
        """
        A loss that is not a probability raises ValueError.
        """
        self.assertRaises(ValueError, Network, loss=2)

    def test_natBehindNAT(self):
        """
        A NAT behind a NAT translates twice, and the path crosses both NATs'
        links.
        """
        network = Network(latency=0.25)
        carrier = network.nat(NAT_A)
        home = network.nat("100.64.0.2", behind=carrier)
        _, port = listen(network.host(ALICE, behind=home), 5000)
        server, _ = listen(network.host(SERVER), 3478)
        port.write(b"hi", (SERVER, 3478))
        network.flush()
        self.assertEqual(
            (server.received, server.times, home.mappingFor(ALICE, 5000).external),
            ([(b"hi", (NAT_A, 5000))], [1.0], ("100.64.0.2", 5000)),
        )


class PresetTests(SynchronousTestCase):
    """
    The classic kinds of NAT.
    """

    def test_fullCone(self):
        """
        A full cone maps and filters independently of the endpoint.
        """
        self.assertEqual(
            fullCone(),
            dict(
                mapping=ENDPOINT_INDEPENDENT,
                filtering=ENDPOINT_INDEPENDENT,
                allocation=PRESERVING,
            ),
        )

    def test_restrictedCone(self):
        """
        A restricted cone filters by address.
        """
        self.assertEqual(
            restrictedCone(),
            dict(
                mapping=ENDPOINT_INDEPENDENT,
                filtering=ADDRESS_DEPENDENT,
                allocation=PRESERVING,
            ),
        )

    def test_portRestrictedCone(self):
        """
        A port-restricted cone filters by address and port.
        """
        self.assertEqual(
            portRestrictedCone(),
            dict(
                mapping=ENDPOINT_INDEPENDENT,
                filtering=ADDRESS_AND_PORT_DEPENDENT,
                allocation=PRESERVING,
            ),
        )

    def test_symmetric(self):
        """
        A symmetric NAT maps and filters by address and port, on random
        ports.
        """
        self.assertEqual(
            symmetric(),
            dict(
                mapping=ADDRESS_AND_PORT_DEPENDENT,
                filtering=ADDRESS_AND_PORT_DEPENDENT,
                allocation=RANDOM,
            ),
        )

    def test_overrides(self):
        """
        A preset takes more settings, and overrides of its own.
        """
        settings = symmetric(allocation=SEQUENTIAL, mappingTimeout=30)
        nat = Network().nat(NAT_A, **settings)
        self.assertEqual((nat.allocation, nat.mappingTimeout), (SEQUENTIAL, 30))


class Reflector(DatagramProtocol):
    """
    A rendezvous server at its simplest: answers each datagram with the
    address it came from.
    """

    noisy = False

    def datagramReceived(self, data, addr):
        self.transport.write(f"{addr[0]}:{addr[1]}".encode(), addr)


class Peer(DatagramProtocol):
    """
    Learns its public address from a L{Reflector}, and punches when told to.

    @ivar public: Its public address, once the reflector answered.
    @ivar fromPeer: C{(data, source)} of each datagram not from the
        reflector.
    """

    noisy = False

    def __init__(self, server):
        self.server = server
        self.public = None
        self.fromPeer = []

    def startProtocol(self):
        self.transport.write(b"who am I?", self.server)

    def datagramReceived(self, data, addr):
        if addr == self.server:
            host, port = data.decode().rsplit(":", 1)
            self.public = (host, int(port))
        else:
            self.fromPeer.append((data, addr))

    def punch(self, address):
        self.transport.write(b"punch", address)


class HolePunchTests(SynchronousTestCase):
    """
    Hole punching through pairs of NATs, with plain protocols.
    """

    def punch(self, aliceNAT, bobNAT):
        """
        Alice and bob learn their public addresses; then, a second apart,
        alice punches, bob punches and alice punches again.

        @return: The network, alice and bob.
        """
        network = Network(latency=0.25, seed=3)
        network.host(SERVER).listenUDP(3478, Reflector())
        alice = Peer((SERVER, 3478))
        bob = Peer((SERVER, 3478))
        aliceHost = network.host(ALICE, behind=network.nat(NAT_A, **aliceNAT))
        bobHost = network.host(BOB, behind=network.nat(NAT_B, **bobNAT))
        aliceHost.listenUDP(5000, alice)
        bobHost.listenUDP(5000, bob)
        network.advance(2)
        del network.traffic[:]
        alice.punch(bob.public)
        network.advance(1)
        bob.punch(alice.public)
        network.advance(1)
        alice.punch(bob.public)
        network.advance(1)
        return network, alice, bob

    def test_portRestrictedCones(self):
        """
        Between two port-restricted cones the first punch is filtered by the
        far NAT, and then both ways get through.
        """
        network, alice, bob = self.punch(portRestrictedCone(), portRestrictedCone())
        self.assertEqual(
            [(d.outcome, d.time) for d in network.traffic],
            [(FILTERED, 2.75), (DELIVERED, 4.0), (DELIVERED, 5.0)],
        )
        self.assertEqual(alice.fromPeer, [(b"punch", (NAT_B, 5000))])
        self.assertEqual(bob.fromPeer, [(b"punch", (NAT_A, 5000))])

    def test_symmetricAndPortRestricted(self):
        """
        From behind a symmetric NAT to a port-restricted cone every punch is
        filtered.
        """
        network, alice, bob = self.punch(symmetric(), portRestrictedCone())
        self.assertEqual([d.outcome for d in network.traffic], [FILTERED] * 3)
        self.assertEqual((alice.fromPeer, bob.fromPeer), ([], []))

    def test_symmetricAndFullCone(self):
        """
        From behind a symmetric NAT to a full cone alice's punches get
        through, from a port the reflector never saw, and bob's punch to the
        port the reflector saw is filtered.
        """
        network, alice, bob = self.punch(symmetric(), fullCone())
        self.assertEqual(
            [d.outcome for d in network.traffic], [DELIVERED, FILTERED, DELIVERED]
        )
        [(_, first), (_, second)] = bob.fromPeer
        self.assertEqual(first, second)
        self.assertNotEqual(first, alice.public)


@st.composite
def scenarios(draw):
    """
    Two NATs of any kind with hosts behind them, a public host, and
    datagrams between any of them and to the NATs' public ports.
    """
    link = st.sampled_from([0.0, 0.125, 0.25, 1.0])
    kinds = st.sampled_from([fullCone, restrictedCone, portRestrictedCone, symmetric])
    nat = st.builds(
        lambda kind, timeout, hairpinning, latency: kind(
            mappingTimeout=timeout, hairpinning=hairpinning, latency=latency
        ),
        kinds,
        st.sampled_from([None, 0.5, 2.0]),
        st.booleans(),
        link,
    )
    return dict(
        seed=draw(st.integers(0, 2**32)),
        loss=draw(st.sampled_from([0.0, 0.25])),
        latency=draw(link),
        nats=draw(st.tuples(nat, nat)),
        sends=draw(
            st.lists(
                st.tuples(
                    st.integers(0, 3),
                    st.integers(0, 6),
                    st.sampled_from([0.0, 0.125, 0.5, 1.0]),
                ),
                max_size=25,
            )
        ),
    )


def play(scenario):
    """
    Run a scenario to the end.

    @return: The network, and how many datagrams each host received.
    """
    network = Network(
        latency=scenario["latency"], loss=scenario["loss"], seed=scenario["seed"]
    )
    natA = network.nat(NAT_A, **scenario["nats"][0])
    natB = network.nat(NAT_B, **scenario["nats"][1])
    hosts = [
        network.host(ALICE, behind=natA),
        network.host(CAROL, behind=natA),
        network.host(BOB, behind=natB),
        network.host(SERVER),
    ]
    listening = [listen(host, 5000) for host in hosts]
    destinations = [
        (ALICE, 5000),
        (CAROL, 5000),
        (SERVER, 5000),
        (NAT_A, 5000),
        (NAT_A, 5001),
        (NAT_B, 5000),
        ("192.0.2.99", 5000),
    ]
    for sender, destination, wait in scenario["sends"]:
        listening[sender][1].write(b"x", destinations[destination])
        network.advance(wait)
    network.flush()
    return network, [len(recorder.received) for recorder, _ in listening]


class PropertyTests(SynchronousTestCase):
    """
    Properties of any run of the network.
    """

    @settings(max_examples=60, deadline=None)
    @given(scenarios())
    def test_everyDatagramAccountedFor(self, scenario):
        """
        Every datagram sent is recorded once, delivered or dropped, and the
        deliveries are what the protocols received.
        """
        network, received = play(scenario)
        self.assertEqual(len(network.traffic), len(scenario["sends"]))
        self.assertEqual(len(network.delivered()), sum(received))
        for datagram in network.traffic:
            self.assertGreaterEqual(datagram.time, datagram.sentAt)

    @settings(max_examples=30, deadline=None)
    @given(scenarios())
    def test_deterministic(self, scenario):
        """
        The same scenario and seed give the same traffic.
        """

        def summary(network):
            return [
                (d.sentAt, d.time, d.source, d.destination, d.outcome, d.receivedFrom)
                for d in network.traffic
            ]

        self.assertEqual(summary(play(scenario)[0]), summary(play(scenario)[0]))
