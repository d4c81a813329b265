"""
Tests for L{punchd.portmap}: the NAT-PMP and PCP codec, byte for byte, and
the client on a L{Clock}.
"""

import struct

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from punchd import portmap
from punchd.drops import DropCounter
from punchd.punching import MAPPED
from punchd.test.helpers import World
from punchd.testing import symmetric

GATEWAY = "10.0.1.1"
ROUTER = (GATEWAY, portmap.SERVER_PORT)
CLIENT = "10.0.1.2"
NONCE = bytes(range(1, 13))


def pcpAnswer(
    result=0, lifetime=7200, nonce=NONCE, port=5000, external=("203.0.113.1", 40000), epoch=1234
):
    """
    A PCP MAP answer (RFC 6887 sections 7.2 and 11.1), 60 bytes.
    """
    return (
        struct.pack("!BBBBII", 2, 0x81, 0, result, lifetime, epoch)
        + bytes(12)
        + nonce
        + struct.pack("!B3xHH", 17, port, external[1])
        + bytes(10) + b"\xff\xff" + bytes(int(b) for b in external[0].split("."))
    )


def pmpAddress(result=0, address=(203, 0, 113, 1), epoch=99):
    return struct.pack("!BBHI4B", 0, 128, result, epoch, *address)


def pmpMapping(result=0, port=5000, external=40000, lifetime=7200, epoch=99):
    return struct.pack("!BBHIHHI", 0, 129, result, epoch, port, external, lifetime)


def pcpAnnounce(epoch, result=0):
    """
    A PCP ANNOUNCE answer (RFC 6887 section 14.1), the 24-byte header.
    """
    return struct.pack("!BBBBII", 2, 0x80, 0, result, 0, epoch) + bytes(16)


class CodecTests(SynchronousTestCase):
    """
    The byte layouts of RFC 6886 and RFC 6887.
    """

    def test_pmpAddressRequest(self):
        """
        The NAT-PMP external address request is version 0, opcode 0.
        """
        self.assertEqual(portmap.encodePMPAddressRequest(), b"\x00\x00")

    def test_pmpMapRequest(self):
        """
        A NAT-PMP UDP mapping request: version, opcode 1, reserved, the
        internal port, the suggested external port and the lifetime.
        """
        self.assertEqual(
            portmap.encodePMPMapRequest(5000, 40000, 7200).hex(),
            "00" "01" "0000" "1388" "9c40" "00001c20",
        )

    def test_pcpMapRequest(self):
        """
        A PCP MAP request: the 24-byte header with the client's address in
        its IPv4-mapped form, then the nonce, protocol 17, the ports and the
        suggested external address.
        """
        self.assertEqual(
            portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 7200).hex(),
            "02" "01" "0000" "00001c20" "00000000000000000000ffff0a000102"
            + NONCE.hex()
            + "11" "000000" "1388" "0000" "00000000000000000000ffff00000000",
        )

    def test_pcpMapRequestSuggests(self):
        """
        A renewal suggests the external address and port held.
        """
        datagram = portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 0, 40000, "203.0.113.1")
        self.assertEqual(len(datagram), portmap.PCP_MAP_BYTES)
        self.assertEqual(datagram[42:].hex(), "9c40" "00000000000000000000ffffcb007101")

    def test_pcpNonceLength(self):
        """
        A nonce must be 12 bytes.
        """
        self.assertRaises(ValueError, portmap.encodePCPMapRequest, CLIENT, b"short", 5000, 1)

    def test_decodePCPAnswer(self):
        """
        A PCP MAP answer gives its result, lifetime, epoch, nonce and the
        assigned external address and port.
        """
        self.assertEqual(
            portmap.decode(pcpAnswer()),
            portmap.PCPMapping(0, 7200, 1234, NONCE, 17, 5000, 40000, "203.0.113.1"),
        )

    def test_decodeShortPCPError(self):
        """
        A PCP error answer of the header alone carries its result.
        """
        datagram = struct.pack("!BBBBII", 2, 0x81, 0, 2, 30, 5) + bytes(12)
        self.assertEqual(portmap.decode(datagram), portmap.PCPMapping(2, 30, 5))

    def test_decodePCPAnnounce(self):
        """
        A PCP ANNOUNCE answer, the header alone, carries its result and
        the router's epoch.
        """
        self.assertEqual(portmap.decode(pcpAnnounce(epoch=7)), portmap.PCPAnnounce(0, 7))

    def test_decodePMPAnswers(self):
        """
        NAT-PMP answers: the external address, a mapping, and the short
        unsupported-version answer a NAT-PMP router gives a PCP request.
        """
        self.assertEqual(portmap.decode(pmpAddress()), portmap.PMPAddress(0, 99, "203.0.113.1"))
        self.assertEqual(portmap.decode(pmpMapping()), portmap.PMPMapping(0, 99, 5000, 40000, 7200))
        self.assertEqual(
            portmap.decode(struct.pack("!BBHI", 0, 129, 1, 99)), portmap.PMPError(1, 1)
        )

    def test_decodeMiniupnpdAnswer(self):
        """
        The NAT-PMP answer miniupnpd 2.3.1 gave to a mapping request for
        port 5000 for an hour, as captured in the NAT lab.
        """
        captured = bytes.fromhex("0081000000000002138813880000" "0e10")
        self.assertEqual(portmap.decode(captured), portmap.PMPMapping(0, 2, 5000, 5000, 3600))

    def test_decodeRejects(self):
        """
        Wrong sizes, versions and opcodes are not answers.
        """
        for datagram in (
            b"",
            b"\x00",
            b"\x01\x80" + bytes(10),
            pmpAddress()[:11],
            pmpMapping() + b"\x00",
            struct.pack("!BBHI", 0, 128, 0, 99),
            b"\x00\x02" + bytes(10),
            pcpAnswer()[:58],
            pcpAnswer()[:40],
            pcpAnswer() + bytes(1100),
            b"\x02\x01" + pcpAnswer()[2:],
            b"\x02\x82" + pcpAnswer()[2:],
        ):
            self.assertRaises(portmap.PortMapError, portmap.decode, datagram)


class Harness:
    """
    A L{portmap.PortMapper} on a clock, its datagrams and its changes
    recorded.
    """

    def __init__(self, testCase, **kwargs):
        self.clock = Clock()
        self.sent = []
        self.changes = []
        self.drops = DropCounter(self.clock)
        self.events = EventLoggingObserver.createWithCleanup(testCase, globalLogPublisher)
        self.mapper = portmap.PortMapper(
            self.clock,
            lambda datagram, address: self.sent.append((datagram, address)),
            GATEWAY,
            CLIENT,
            5000,
            self.changes.append,
            self.drops,
            randbytes=lambda n: NONCE,
            random=lambda: 0.5,
            **kwargs,
        )

    def lines(self):
        return [formatEvent(e) for e in self.events]

    def advance(self, seconds, step=0.05):
        for _ in range(int(round(seconds / step))):
            self.clock.advance(step)


class PortMapperTests(SynchronousTestCase):
    """
    The client: PCP, then NAT-PMP, renewal, deletion and hostile answers.
    """

    def test_pcpMapping(self):
        """
        The first request is PCP's, to the gateway; a successful answer
        makes the mapping, tells the listener and logs it plainly.
        """
        h = Harness(self)
        h.mapper.start()
        self.assertEqual(h.sent, [(portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 7200), ROUTER)])
        self.assertTrue(h.mapper.handle(pcpAnswer(), ROUTER))
        mapping = portmap.Mapping(("203.0.113.1", 40000), 7200, "PCP")
        self.assertEqual((h.mapper.mapping, h.changes), (mapping, [mapping]))
        self.assertIn(
            "Port mapping: the router at 10.0.1.1 maps 203.0.113.1:40000 to our port 5000"
            " for 7200 s (PCP)",
            h.lines(),
        )

    def test_pcpRenewalAndDeletion(self):
        """
        At half the lifetime the mapping is renewed with the same nonce,
        suggesting the address held; at stop it is deleted with lifetime 0,
        and no timer remains.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(lifetime=100), ROUTER)
        h.clock.advance(49.9)
        self.assertEqual(len(h.sent), 1)
        h.clock.advance(0.1)
        renewal = portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 7200, 40000, "203.0.113.1")
        self.assertEqual(h.sent[1:], [(renewal, ROUTER)])
        h.mapper.handle(pcpAnswer(lifetime=100), ROUTER)
        self.assertEqual(len(h.changes), 1)
        h.mapper.stop()
        deletion = portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 0, 40000, "203.0.113.1")
        self.assertEqual(h.sent[2:], [(deletion, ROUTER)])
        self.assertIsNone(h.mapper.mapping)
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_renewalMoves(self):
        """
        A renewal answered with another external port is a new mapping:
        the listener is told, and the log says so.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(lifetime=100), ROUTER)
        h.clock.advance(50)
        h.mapper.handle(pcpAnswer(lifetime=100, external=("203.0.113.1", 40001)), ROUTER)
        self.assertEqual(
            [m.external for m in h.changes], [("203.0.113.1", 40000), ("203.0.113.1", 40001)]
        )
        self.assertIn(
            "Port mapping: the router at 10.0.1.1 maps 203.0.113.1:40001 to our port 5000"
            " for 100 s (PCP)",
            h.lines(),
        )

    def test_silentRouter(self):
        """
        A router that answers nothing gets PCP twice (at 0 and 3 s), then
        the NAT-PMP address request five times, after which the client
        says so and stops: nothing more is sent and no timer remains.
        """
        h = Harness(self)
        h.mapper.start()
        h.advance(30)
        versions = [datagram[0] for datagram, _ in h.sent]
        self.assertEqual(versions, [2, 2, 0, 0, 0, 0, 0])
        self.assertIn(
            "No port mapping: the router at 10.0.1.1 did not answer NAT-PMP or PCP", h.lines()
        )
        self.assertEqual((h.changes, h.clock.getDelayedCalls()), ([], []))

    def test_natPMPAfterUnsupportedVersion(self):
        """
        A NAT-PMP router's unsupported-version answer to PCP moves the
        client to NAT-PMP at once: the external address, then the mapping.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 1, 99), ROUTER)
        self.assertEqual(h.sent[-1], (b"\x00\x00", ROUTER))
        h.mapper.handle(pmpAddress(), ROUTER)
        self.assertEqual(h.sent[-1], (portmap.encodePMPMapRequest(5000, 0, 7200), ROUTER))
        h.mapper.handle(pmpMapping(), ROUTER)
        mapping = portmap.Mapping(("203.0.113.1", 40000), 7200, "NAT-PMP")
        self.assertEqual(h.changes, [mapping])
        h.mapper.stop()
        self.assertEqual(h.sent[-1], (portmap.encodePMPMapRequest(5000, 0, 0), ROUTER))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_natPMPAfterFullSizeUnsupportedVersion(self):
        """
        A NAT-PMP router that says "unsupported version" to PCP in a
        mapping answer's 16 bytes moves the client to NAT-PMP too.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pmpMapping(result=1, port=0, external=0, lifetime=0), ROUTER)
        self.assertEqual(h.sent[-1], (b"\x00\x00", ROUTER))
        self.assertEqual(dict(h.drops.counts), {})

    def test_natPMPMapRefusedShort(self):
        """
        A short NAT-PMP error to the mapping request is a refusal.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 1, 99), ROUTER)
        h.mapper.handle(pmpAddress(), ROUTER)
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 2, 99), ROUTER)
        self.assertIn(
            "No port mapping: the router at 10.0.1.1 refused the mapping over NAT-PMP:"
            " not authorized or refused",
            h.lines(),
        )
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_refused(self):
        """
        A PCP refusal is reported with its result code, and NAT-PMP is not
        tried.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(result=2), ROUTER)
        self.assertIn(
            "No port mapping: the router at 10.0.1.1 refused the mapping over PCP: NOT_AUTHORIZED",
            h.lines(),
        )
        self.assertEqual((len(h.sent), h.mapper.mapping), (1, None))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_renewalUnansweredRetried(self):
        """
        A renewal that gets no answer is tried again at half the time the
        mapping has left, three times, and the log says each; then the
        mapping is given up, the listener told and the log says it is lost.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(), ROUTER)
        h.advance(7300, step=0.25)
        renewal = portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 7200, 40000, "203.0.113.1")
        self.assertEqual(h.sent[1:], [(renewal, ROUTER)] * 8)
        retries = [line for line in h.lines() if "did not answer the renewal" in line]
        self.assertEqual(
            retries,
            [
                "Port mapping: the router at 10.0.1.1 did not answer the renewal of"
                f" 203.0.113.1:40000 (PCP); trying again in {delay} s, {left} s before it expires"
                for delay, left in (("1796", "3591"), ("893", "1786"), ("442", "884"))
            ] + [
                "No port mapping: the router at 10.0.1.1 did not answer the renewal of"
                " 203.0.113.1:40000 over PCP: the mapping is lost"
            ],
        )
        self.assertEqual((h.changes[-1], h.mapper.mapping), (None, None))
        self.assertEqual(h.clock.getDelayedCalls(), [])

    def test_renewalRetryAnswered(self):
        """
        A retried renewal that is answered keeps the mapping, and the
        listener hears of no change.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(lifetime=100, epoch=1000), ROUTER)
        h.advance(60)
        h.advance(20.5)
        self.assertEqual(len(h.sent), 4)
        h.mapper.handle(pcpAnswer(lifetime=100, epoch=1080), ROUTER)
        self.assertEqual(len(h.changes), 1)
        self.assertIsNotNone(h.mapper.mapping)
        self.assertAlmostEqual(h.clock.getDelayedCalls()[0].getTime(), 130.5)

    def test_natPMPRenewalUnansweredRetried(self):
        """
        A NAT-PMP renewal that is not answered is retried too.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 1, 99), ROUTER)
        h.mapper.handle(pmpAddress(), ROUTER)
        h.mapper.handle(pmpMapping(lifetime=100), ROUTER)
        h.advance(60)
        self.assertIn(
            "Port mapping: the router at 10.0.1.1 did not answer the renewal of"
            " 203.0.113.1:40000 (NAT-PMP); trying again in 21 s, 42 s before it expires",
            h.lines(),
        )
        self.assertIsNotNone(h.mapper.mapping)

    def test_epochRules(self):
        """
        A router restarted when its epoch falls behind our clock: NAT-PMP's
        rule allows 7/8 of the time passed less 2 s; PCP's allows 2 s and
        1/16 either way, and 1 s back.
        """
        restarted = portmap.routerRestarted
        self.assertFalse(restarted("NAT-PMP", (0, 1000), (100, 1086)))
        self.assertTrue(restarted("NAT-PMP", (0, 1000), (100, 1085)))
        self.assertTrue(restarted("NAT-PMP", (0, 1000), (100, 5)))
        self.assertFalse(restarted("PCP", (0, 1000), (100, 1100)))
        self.assertFalse(restarted("PCP", (0, 1000), (0.5, 999)))
        self.assertTrue(restarted("PCP", (0, 1000), (0.5, 998)))
        self.assertTrue(restarted("PCP", (0, 1000), (100, 1091)))
        self.assertTrue(restarted("PCP", (0, 1000), (100, 1110)))
        self.assertTrue(restarted("PCP", (0, 1000), (100, 5)))

    def test_restartInRenewalLogged(self):
        """
        A renewal answer whose epoch went back says, in the log, that the
        router restarted and lost its mappings.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(lifetime=100, epoch=1000), ROUTER)
        h.clock.advance(50)
        h.mapper.handle(pcpAnswer(lifetime=100, epoch=3), ROUTER)
        self.assertIn(
            "Port mapping: the router at 10.0.1.1 restarted and lost its mappings"
            " (epoch 3 s, 1000 s 50 s ago)",
            h.lines(),
        )

    def test_pcpAnnounceOfRestartRequestsAgain(self):
        """
        An unasked PCP ANNOUNCE whose epoch shows a restart has the client
        ask for its mapping again at once, suggesting the address it held.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(epoch=1000), ROUTER)
        h.clock.advance(600)
        self.assertTrue(h.mapper.handle(pcpAnnounce(epoch=2), ROUTER))
        renewal = portmap.encodePCPMapRequest(CLIENT, NONCE, 5000, 7200, 40000, "203.0.113.1")
        self.assertEqual(h.sent[1:], [(renewal, ROUTER)])
        self.assertEqual(dict(h.drops.counts), {})
        h.mapper.handle(pcpAnswer(epoch=3, external=("203.0.113.1", 40002)), ROUTER)
        self.assertEqual(h.changes[-1].external, ("203.0.113.1", 40002))

    def test_natPMPAnnounceOfRestartRequestsAgain(self):
        """
        An unasked NAT-PMP external address answer whose epoch shows a
        restart has the client ask for its mapping again at once.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 1, 99), ROUTER)
        h.mapper.handle(pmpAddress(epoch=1000), ROUTER)
        h.mapper.handle(pmpMapping(epoch=1000), ROUTER)
        h.clock.advance(600)
        h.mapper.handle(pmpAddress(epoch=2), ROUTER)
        self.assertEqual(h.sent[-1], (b"\x00\x00", ROUTER))
        h.mapper.handle(pmpAddress(epoch=2), ROUTER)
        self.assertEqual(h.sent[-1], (portmap.encodePMPMapRequest(5000, 40000, 7200), ROUTER))

    def test_announceWithoutRestartDropped(self):
        """
        An unasked announcement whose epoch has advanced as it should, or
        one while a request is in flight, is dropped, counted, and makes
        the client send nothing.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(pcpAnswer(epoch=1000), ROUTER)
        h.clock.advance(600)
        h.mapper.handle(pcpAnnounce(epoch=1600), ROUTER)
        h.clock.advance(3000)
        h.mapper.handle(pcpAnnounce(epoch=1), ROUTER)
        self.assertEqual(len(h.sent), 2)
        self.assertEqual(sum(h.drops.counts.values()), 2)

    def test_announceDuringNATPMPAddressRequestDropped(self):
        """
        A PCP ANNOUNCE while NAT-PMP's external address request is in
        flight is not taken for its answer: it is dropped and counted.
        """
        h = Harness(self)
        h.mapper.start()
        h.mapper.handle(struct.pack("!BBHI", 0, 129, 1, 99), ROUTER)
        self.assertTrue(h.mapper.handle(pcpAnnounce(epoch=5), ROUTER))
        self.assertEqual(dict(h.drops.counts), {"unexpected port mapping answer": 1})
        h.mapper.handle(pmpAddress(), ROUTER)
        self.assertEqual(h.sent[-1], (portmap.encodePMPMapRequest(5000, 0, 7200), ROUTER))

    def test_otherSourcesNotTaken(self):
        """
        What does not come from the gateway's port 5351 is not taken.
        """
        h = Harness(self)
        h.mapper.start()
        self.assertFalse(h.mapper.handle(pcpAnswer(), (GATEWAY, 9999)))
        self.assertFalse(h.mapper.handle(pcpAnswer(), ("10.0.1.9", portmap.SERVER_PORT)))
        self.assertIsNone(h.mapper.mapping)

    def test_hostileAnswersDropped(self):
        """
        Answers with another nonce, protocol or internal port, malformed
        ones, and answers to nothing asked are dropped and counted; none is
        answered, and the request keeps its schedule.
        """
        h = Harness(self)
        h.mapper.start()
        for datagram in (
            pcpAnswer(nonce=bytes(12)),
            pcpAnswer(port=5001),
            pcpAnswer()[:36] + b"\x06" + pcpAnswer()[37:],
            b"\x02\x81\x00",
            pmpMapping(),
        ):
            self.assertTrue(h.mapper.handle(datagram, ROUTER))
        self.assertEqual(
            dict(h.drops.counts),
            {
                "unmatched port mapping answer": 3,
                "malformed port mapping answer": 1,
                "unexpected port mapping answer": 1,
            },
        )
        self.assertEqual((h.mapper.mapping, len(h.sent)), (None, 1))
        h.mapper.handle(pcpAnswer(), ROUTER)
        self.assertIsNotNone(h.mapper.mapping)


class PeerPortMappingTests(SynchronousTestCase):
    """
    A peer with a port mapping offers it to its contact through the stage
    manager, and the contact probes it.
    """

    def test_mappedAddressOffered(self):
        """
        Once alice's router grants a mapping, bob gets it as a mapped
        candidate through the stage manager and probes it; when alice
        leaves, she deletes the mapping with the nonce she asked with.
        """
        world = World(symmetric(), symmetric(), portMapping=(GATEWAY, CLIENT))
        world.start()
        external = ("198.51.100.1", 40000)

        def toRouter():
            return [
                d.data for d in world.network.traffic
                if d.destination == ROUTER and d.source == (CLIENT, 5000)
            ]

        request = toRouter()[0]
        nonce = request[24:36]
        self.assertEqual(request, portmap.encodePCPMapRequest(CLIENT, nonce, 5000, 7200))
        self.assertTrue(
            world.alice.portMapper.handle(pcpAnswer(nonce=nonce, external=external), ROUTER)
        )
        world.network.advance(3)
        path = world.bob.contacts["alice"].path
        self.assertIn(("198.51.100.1:40000 (mapped)"), [repr(c) for c in path.candidates])
        self.assertNotEqual(
            [d for d in world.network.traffic if d.destination == external], []
        )
        world.alice.leave()
        world.network.advance(1)
        self.assertEqual(
            toRouter()[-1], portmap.encodePCPMapRequest(CLIENT, nonce, 5000, 0, *reversed(external))
        )

    def test_mappingAfterIntroductionOffered(self):
        """
        A mapping granted while alice is already punching to bob is sent
        to him then.
        """
        world = World(symmetric(), symmetric(), portMapping=(GATEWAY, CLIENT))
        world.start()
        world.network.advance(2)
        path = world.bob.contacts["alice"].path
        self.assertEqual([c for c in path.candidates if c.kind == MAPPED], [])
        request = [
            d.data for d in world.network.traffic
            if d.destination == ROUTER and d.source == (CLIENT, 5000)
        ][0]
        world.alice.portMapper.handle(
            pcpAnswer(nonce=request[24:36], external=("198.51.100.1", 40000)), ROUTER
        )
        world.network.advance(1)
        self.assertEqual(
            [c.address for c in path.candidates if c.kind == MAPPED], [("198.51.100.1", 40000)]
        )

    def test_mappingAfterFailedPunchIntroducedAgain(self):
        """
        A mapping granted after alice's punch to bob failed makes her
        register at once, seeking him: the introduction that follows
        carries it to bob within a second, not at her next registration.
        """
        world = World(
            symmetric(), symmetric(), portMapping=(GATEWAY, CLIENT), punchTimeout=2.0
        )
        world.start()
        world.network.advance(4)
        self.assertTrue(world.alice.contacts["bob"].seeking)
        request = [
            d.data for d in world.network.traffic
            if d.destination == ROUTER and d.source == (CLIENT, 5000)
        ][0]
        world.alice.portMapper.handle(
            pcpAnswer(nonce=request[24:36], external=("198.51.100.1", 40000)), ROUTER
        )
        world.network.advance(1)
        path = world.bob.contacts["alice"].path
        self.assertEqual(
            [c.address for c in path.candidates if c.kind == MAPPED], [("198.51.100.1", 40000)]
        )
