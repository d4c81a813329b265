"""
Tests for NAT behaviour discovery: L{punchd.discovery} on the stage manager
and L{punchd.natprobe} in the peer, over simulated NATs.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from punchd import peer_tap, stun
from punchd.discovery import UNKNOWN_ATTRIBUTE, BehaviourDiscovery
from punchd.natprobe import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    RETRIES,
    NATBehaviour,
    NATProbe,
    ProbeError,
    filteringSchedule,
)
from punchd.peer import PeerProtocol
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol
from punchd.testing import (
    Network,
    fullCone,
    portRestrictedCone,
    restrictedCone,
    symmetric,
)

SERVER = ("192.0.2.10", 8080)
ALTERNATE = "192.0.2.11"


class Recorder(DatagramProtocol):
    def __init__(self):
        self.received = []

    def datagramReceived(self, datagram, address):
        self.received.append((stun.decode(datagram), address))


def stageManager(network, alternateAddress=True):
    """
    A stage manager offering NAT behaviour discovery on 192.0.2.10 and, with
    C{alternateAddress}, 192.0.2.11, ports 8080 and 8081.
    """
    primary = network.host(SERVER[0])
    hosts = {SERVER[0]: primary}
    if alternateAddress:
        hosts[ALTERNATE] = network.host(ALTERNATE)
    discovery = BehaviourDiscovery(SERVER, 8081, ALTERNATE if alternateAddress else None)
    server = StageManagerProtocol(primary, Phonebook(10, 60), discovery=discovery)
    primary.listenUDP(SERVER[1], server)
    for _, (host, port), protocol in discovery.alternateSockets(server.drops):
        hosts[host].listenUDP(port, protocol)
    return server


class DiscoveryTests(SynchronousTestCase):
    """
    The stage manager's RFC 5780 answers.
    """

    def setUp(self):
        self.network = Network(latency=0.125)
        self.server = stageManager(self.network)
        self.client = Recorder()
        self.transport = self.network.host("203.0.113.5").listenUDP(5000, self.client)

    def request(self, destination, changeIP=False, changePort=False):
        attributes = ()
        if changeIP or changePort:
            attributes = ((stun.CHANGE_REQUEST, stun.encodeChangeRequest(changeIP, changePort)),)
        txid = stun.newTransactionID()
        self.transport.write(
            stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid, attributes)), destination
        )
        self.network.advance(1)
        [(answer, source)] = self.client.received
        self.client.received.clear()
        return answer, source

    def test_answeredFromRequestedSocket(self):
        """
        Each CHANGE-REQUEST is answered from the socket it asks for, which
        RESPONSE-ORIGIN names; OTHER-ADDRESS names the socket that differs
        from the request's in address and port.
        """
        cases = [
            ((False, False), SERVER, (ALTERNATE, 8081)),
            ((False, True), ("192.0.2.10", 8081), (ALTERNATE, 8081)),
            ((True, False), (ALTERNATE, 8080), (ALTERNATE, 8081)),
            ((True, True), (ALTERNATE, 8081), (ALTERNATE, 8081)),
        ]
        for (changeIP, changePort), origin, other in cases:
            answer, source = self.request(SERVER, changeIP, changePort)
            self.assertEqual(source, origin)
            self.assertEqual(stun.decodeAddress(answer.get(stun.RESPONSE_ORIGIN)), origin)
            self.assertEqual(stun.decodeAddress(answer.get(stun.OTHER_ADDRESS)), other)
            self.assertEqual(
                stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), answer.transactionID),
                ("203.0.113.5", 5000),
            )

    def test_alternateSocketAnswers(self):
        """
        A request to an alternate socket is answered from it, with the
        primary socket as OTHER-ADDRESS.
        """
        answer, source = self.request((ALTERNATE, 8081))
        self.assertEqual(source, (ALTERNATE, 8081))
        self.assertEqual(stun.decodeAddress(answer.get(stun.OTHER_ADDRESS)), SERVER)

    def test_alternateSocketDropsOthers(self):
        """
        An alternate socket drops everything but Binding requests, and
        counts it.
        """
        self.transport.write(b"junk", (ALTERNATE, 8080))
        self.transport.write(
            stun.encode(stun.Message(stun.BINDING, stun.INDICATION, stun.newTransactionID())),
            (ALTERNATE, 8080),
        )
        self.network.advance(1)
        self.assertEqual(self.client.received, [])
        self.assertEqual(
            dict(self.server.drops.counts), {"malformed": 1, "unexpected message": 1}
        )

    def test_noAlternateAddress(self):
        """
        Without an alternate address, a request to change the address is
        refused with 420 and UNKNOWN-ATTRIBUTES naming CHANGE-REQUEST.
        """
        network = Network(latency=0.125)
        stageManager(network, alternateAddress=False)
        client = Recorder()
        transport = network.host("203.0.113.5").listenUDP(5000, client)
        transport.write(
            stun.encode(
                stun.Message(
                    stun.BINDING, stun.REQUEST, stun.newTransactionID(),
                    ((stun.CHANGE_REQUEST, stun.encodeChangeRequest(True, False)),),
                )
            ),
            SERVER,
        )
        network.advance(1)
        [(answer, source)] = client.received
        self.assertEqual(answer.messageClass, stun.ERROR)
        self.assertEqual(stun.decodeErrorCode(answer.get(stun.ERROR_CODE))[0], UNKNOWN_ATTRIBUTE)
        self.assertEqual(answer.get(stun.UNKNOWN_ATTRIBUTES), b"\x00\x03")


EXPECTED = [
    # NAT, mapping, filtering, kind, port preserved, hairpinning
    (None, ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT, "no NAT", True, None),
    (fullCone(), ENDPOINT_INDEPENDENT, ENDPOINT_INDEPENDENT, "full cone NAT", True, False),
    (restrictedCone(), ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT, "restricted cone NAT", True, False),
    (portRestrictedCone(), ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "port-restricted cone NAT", True, False),
    (portRestrictedCone(mapping=ADDRESS_DEPENDENT, allocation="sequential"), ADDRESS_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "symmetric NAT", False, False),
    (symmetric(), ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "symmetric NAT", False, False),
    (portRestrictedCone(hairpinning=True), ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT, "port-restricted cone NAT", True, True),
]


class PeerProbeTests(SynchronousTestCase):
    """
    A peer finds out how its NAT behaves.
    """

    def probe(self, nat, discovery=True):
        network = Network(latency=0.02)
        if discovery:
            stageManager(network)
        else:
            network.host(SERVER[0]).listenUDP(
                SERVER[1], StageManagerProtocol(network.clock, Phonebook(10, 60))
            )
        if nat is None:
            host = network.host("198.51.100.7")
        else:
            host = network.host("10.0.1.2", behind=network.nat("198.51.100.1", **nat))
        peer = PeerProtocol(host, SERVER, "alice", "bob", localHosts=(host.address,))
        port = host.listenUDP(5000, peer)
        network.advance(10)
        self.assertIsNone(peer.natProbe)
        port.stopListening()
        self.assertEqual(host.getDelayedCalls(), [])
        return peer.natBehaviour

    def test_everyKind(self):
        """
        The verdict matches the simulated NAT, for every kind.
        """
        for nat, mapping, filtering, kind, preserved, hairpinning in EXPECTED:
            behaviour = self.probe(nat)
            self.assertEqual(
                (behaviour.mapping, behaviour.filtering, behaviour.kind,
                 behaviour.portPreserved, behaviour.hairpinning),
                (mapping, filtering, kind, preserved, hairpinning),
                nat,
            )

    def test_verdictLogged(self):
        """
        The peer logs its NAT's verdict in one line.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.probe(restrictedCone())
        [event] = [e for e in events if e["log_format"] == "My NAT: {verdict}"]
        self.assertEqual(
            event["verdict"],
            "restricted cone NAT at 198.51.100.1:5000: endpoint-independent mapping,"
            " address-dependent filtering, port preserved, does not hairpin",
        )

    def test_noDiscovery(self):
        """
        Against a stage manager without NAT behaviour discovery, the peer
        says its NAT's behaviour is unknown, and why.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertIsNone(self.probe(portRestrictedCone(), discovery=False))
        [event] = [e for e in events if "unknown" in e["log_format"]]
        self.assertIn("does not offer NAT behaviour discovery", event["reason"])


class FilteringWaitTests(SynchronousTestCase):
    """
    The filtering tests wait a few round trips for answers a filtering NAT
    never lets in, not the whole retransmission schedule.
    """

    def test_schedule(self):
        """
        Each step is three round trips of the first request, at least
        0.1 s, and no longer than that step of the usual schedule.
        """
        for roundTrip, expected in [
            (0.05, (0.15, 0.15, 0.15)),
            (0.001, (0.1, 0.1, 0.1)),
            (0.25, (0.3, 0.6, 0.75)),
            (2.0, RETRIES),
        ]:
            schedule = filteringSchedule(RETRIES, roundTrip)
            self.assertEqual([round(s, 9) for s in schedule], list(expected), roundTrip)

    def verdictTime(self, nat, latency):
        network = Network(latency=latency)
        stageManager(network)
        host = network.host("10.0.1.2", behind=network.nat("198.51.100.1", **nat))
        peer = PeerProtocol(host, SERVER, "alice", "bob", localHosts=(host.address,))
        port = host.listenUDP(5000, peer)
        self.addCleanup(port.stopListening)
        while peer.natBehaviour is None and network.clock.seconds() < 10:
            network.advance(0.001)
        return peer.natBehaviour, network.clock.seconds()

    def test_portRestrictedVerdictAfterFewRoundTrips(self):
        """
        Behind a port-restricted cone, three links of 10 ms each way (a
        60 ms round trip), the verdict comes once the filtering tests have
        waited three round trips three times and the mapping test is
        answered: 0.66 s from the start, where the usual schedule took
        1.92 s.  It is still the right verdict.
        """
        behaviour, when = self.verdictTime(portRestrictedCone(), 0.01)
        self.assertEqual(
            (behaviour.mapping, behaviour.filtering),
            (ENDPOINT_INDEPENDENT, ADDRESS_AND_PORT_DEPENDENT),
        )
        roundTrip = 2 * 3 * 0.01
        self.assertAlmostEqual(when, roundTrip + 9 * roundTrip + roundTrip, delta=0.002)

    def test_slowLinksKeepTheUsualSchedule(self):
        """
        Over links slow enough that three round trips are longer than a
        step of the usual schedule, the filtering tests wait as before,
        and the verdict is still right.
        """
        behaviour, when = self.verdictTime(restrictedCone(), 0.1)
        self.assertEqual(
            (behaviour.mapping, behaviour.filtering), (ENDPOINT_INDEPENDENT, ADDRESS_DEPENDENT)
        )


class ExplanationTests(SynchronousTestCase):
    """
    The report in plain words.
    """

    def test_symmetric(self):
        """
        A symmetric NAT's report says what it does and that it cannot punch
        with port-restricted cones.
        """
        report = NATBehaviour(
            5000, ("198.51.100.1", 40123), True,
            ADDRESS_AND_PORT_DEPENDENT, ADDRESS_AND_PORT_DEPENDENT, False,
        ).explain()
        self.assertEqual(
            report,
            [
                "This socket's public address is 198.51.100.1:40123.",
                "The NAT gives a new public port for each destination address and port"
                " (address-and-port-dependent mapping).",
                "It changed the local port 5000 to 40123.",
                "The NAT lets in datagrams only from the exact addresses and ports it has"
                " sent to (address-and-port-dependent filtering).",
                "It does not hairpin: peers behind it must reach each other at their local"
                " addresses, which punchd tries first.",
                "In short: a symmetric NAT.",
                "Hole punching works only with a peer behind no NAT, a full cone or a"
                " restricted cone NAT, which lets in this NAT's new port for it; not with a"
                " port-restricted cone or another symmetric NAT.",
            ],
        )


class CancelTests(SynchronousTestCase):
    """
    Stopping a probe half way.
    """

    def test_cancelStopsEverything(self):
        """
        A cancelled probe fails with L{ProbeError}, leaves no timer and sends
        nothing more.
        """
        clock = Clock()
        sent = []
        probe = NATProbe(clock, lambda datagram, a: sent.append(datagram), SERVER, 5000)
        d = probe.run()
        txid = stun.decode(sent[0]).transactionID
        answer = stun.Message(
            stun.BINDING, stun.SUCCESS, txid,
            (
                (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress("198.51.100.1", 5000, txid)),
                (stun.OTHER_ADDRESS, stun.encodeAddress(ALTERNATE, 8081)),
            ),
        )
        self.assertTrue(probe.handle(answer, SERVER))
        self.assertNotEqual(clock.getDelayedCalls(), [])
        before = len(sent)
        probe.cancel()
        self.failureResultOf(d, ProbeError)
        self.assertEqual(clock.getDelayedCalls(), [])
        clock.advance(10)
        self.assertEqual(len(sent), before)


#: An XOR-MAPPED-ADDRESS of an address family that does not exist.
BAD_ADDRESS = b"\x00\x07\x00\x00"


def answer(request, *attributes, messageClass=stun.SUCCESS):
    """
    An answer to the Binding request C{request}, a datagram, with
    C{attributes}.
    """
    return stun.Message(stun.BINDING, messageClass, stun.decode(request).transactionID, attributes)


def goodAnswer(request):
    """
    A stage manager's answer to the first request: the mapping, and the
    other address of a stage manager that offers discovery.
    """
    txid = stun.decode(request).transactionID
    return answer(
        request,
        (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress("198.51.100.1", 5000, txid)),
        (stun.OTHER_ADDRESS, stun.encodeAddress(ALTERNATE, 8081)),
    )


class MalformedAnswerTests(SynchronousTestCase):
    """
    An answer that cannot be used, forged or broken, does not end the
    probe: it is dropped and counted, and named if the probe ends without
    a good one.
    """

    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.probe = NATProbe(
            self.clock, lambda datagram, a: self.sent.append(datagram), SERVER, 5000
        )
        self.result = self.probe.run()

    def test_malformedAnswerDropped(self):
        """
        A malformed answer is taken, counted and dropped; a good answer to
        the same request after it carries the probe on.
        """
        request = self.sent[0]
        self.assertTrue(self.probe.handle(answer(request, (stun.XOR_MAPPED_ADDRESS, BAD_ADDRESS)), SERVER))
        self.assertEqual(dict(self.probe.drops.counts), {"malformed answer": 1})
        self.assertNoResult(self.result)
        sentBefore = len(self.sent)
        self.assertTrue(self.probe.handle(goodAnswer(request), SERVER))
        self.assertGreater(len(self.sent), sentBefore, "the filtering tests follow")
        self.assertNoResult(self.result)
        self.probe.cancel()
        self.failureResultOf(self.result, ProbeError)

    def test_onlyMalformedAnswers(self):
        """
        A probe that gets only malformed answers fails, once the request
        has timed out, with a reason that names them.
        """
        request = self.sent[0]
        for attributes in (
            [(stun.XOR_MAPPED_ADDRESS, BAD_ADDRESS)],
            [],
            [
                (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress("198.51.100.1", 5000, bytes(12))),
                (stun.OTHER_ADDRESS, b"\x00"),
            ],
        ):
            self.probe.handle(answer(request, *attributes), SERVER)
        self.assertNoResult(self.result)
        self.clock.pump(RETRIES)
        reason = self.failureResultOf(self.result, ProbeError).getErrorMessage()
        self.assertEqual(
            reason,
            "the stage manager at 192.0.2.10:8080 did not answer, but for 3 malformed"
            " answers that the probe dropped, the first from 192.0.2.10:8080: bad"
            " XOR-MAPPED-ADDRESS: address family 0x07 is not IPv4 or IPv6",
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_errorAnswer(self):
        """
        An error response is dropped and counted too, and named with its
        code if no good answer follows.
        """
        self.probe.handle(
            answer(
                self.sent[0],
                (stun.ERROR_CODE, stun.encodeErrorCode(400, "Bad Request")),
                messageClass=stun.ERROR,
            ),
            SERVER,
        )
        self.assertEqual(dict(self.probe.drops.counts), {"error answer": 1})
        self.clock.pump(RETRIES)
        self.assertIn(
            "1 error answer that the probe dropped, the first from 192.0.2.10:8080:"
            " error 400 Bad Request",
            self.failureResultOf(self.result, ProbeError).getErrorMessage(),
        )

    def test_dropsLogged(self):
        """
        Each dropped answer is logged by the probe's L{DropCounter}, with
        what is wrong with it.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.probe.handle(answer(self.sent[0], (stun.XOR_MAPPED_ADDRESS, BAD_ADDRESS)), SERVER)
        [event] = [e for e in events if e.get("reason") == "malformed answer"]
        self.assertIn("bad XOR-MAPPED-ADDRESS", event["detail"])
        self.probe.cancel()
        self.failureResultOf(self.result, ProbeError)


class MalformingStageManager(DatagramProtocol):
    """
    A stage manager whose every Binding answer has a malformed
    XOR-MAPPED-ADDRESS.
    """

    def datagramReceived(self, datagram, address):
        self.transport.write(
            stun.encode(answer(datagram, (stun.XOR_MAPPED_ADDRESS, BAD_ADDRESS))), address
        )


class ProbeCommandTests(SynchronousTestCase):
    """
    C{punch-peer --probe} says why it cannot tell how the NAT behaves.
    """

    def test_malformedAnswersReported(self):
        """
        Against a stage manager whose answers are malformed, the report
        logs an error naming them, then stops the reactor.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = MemoryReactorClock()
        network = Network(clock=reactor, latency=0.02)
        network.host(SERVER[0]).listenUDP(SERVER[1], MalformingStageManager())
        options = peer_tap.Options()
        options.parseOptions(["--server", "192.0.2.10:8080", "--probe"])
        report = peer_tap.makeService(options, reactor=reactor).args[1]
        network.host("198.51.100.7").listenUDP(5000, report)
        network.advance(10)
        self.assertTrue(reactor.hasStopped)
        [error] = [e for e in events if e["log_format"].startswith("Cannot tell")]
        self.assertIn("3 malformed answers that the probe dropped", error["reason"])
        self.assertIn("bad XOR-MAPPED-ADDRESS", error["reason"])


class PeerMalformedAnswerTests(SynchronousTestCase):
    """
    A peer's probe at start counts the answers it cannot use among the
    peer's drops.
    """

    def test_countedAndReported(self):
        """
        Against a stage manager whose answers are malformed, the peer counts
        them and says its NAT's behaviour is unknown, naming them.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        network = Network(latency=0.02)
        network.host(SERVER[0]).listenUDP(SERVER[1], MalformingStageManager())
        host = network.host("198.51.100.7")
        peer = PeerProtocol(host, SERVER, "alice", "bob", localHosts=(host.address,))
        port = host.listenUDP(5000, peer)
        network.advance(10)
        port.stopListening()
        self.assertEqual(peer.drops.counts["malformed answer"], 3)
        [event] = [e for e in events if "unknown" in e["log_format"]]
        self.assertIn("3 malformed answers that the probe dropped", event["reason"])
