"""
Tests for NAT behaviour discovery: L{punchd.discovery} on the stage manager
and L{punchd.natprobe} in the peer, over simulated NATs.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from punchd import stun
from punchd.discovery import UNKNOWN_ATTRIBUTE, BehaviourDiscovery
from punchd.natprobe import (
    ADDRESS_AND_PORT_DEPENDENT,
    ADDRESS_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    NATBehaviour,
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
        from twisted.internet.task import Clock

        from punchd.natprobe import NATProbe, ProbeError

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
