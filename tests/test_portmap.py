"""
Port mapping through a real router: miniupnpd (L{tests.miniupnpd}) on a
NAT of the lab, and the real C{twistd punch-peer --port-mapping} behind it.

They need root and miniupnpd.  Without either they skip, saying why; with
C{CI=true} a skip is a failure.
"""

import re
import time

from punchd.demo import Processes
from tests.miniupnpd import GLOBAL_PUBLIC, MiniUPnPd, globalise, requireMiniupnpd
from tests.natdemo import Run
from tests.natlab import Lab
from tests.natmatrix import received
from tests.test_natlab import LabTestCase


def mappedLine(protocol):
    """
    The line bob logs when the router grants his mapping over C{protocol}.
    """
    return re.compile(
        r"Port mapping: the router at 10\.0\.2\.1 maps ([\d.]+:\d+) to our port (\d+)"
        rf" for \d+ s \({re.escape(protocol)}\)"
    )


LISTENING = re.compile(r"Listening on port \d+")
ALICE_UP = re.compile(r"Direct path to bob is up via ([\d.]+:\d+) \((\w[\w-]*)\)")


class PortMappingTests(LabTestCase):
    """
    Two symmetric NATs, which cannot punch, and one of the routers grants
    port mappings.
    """

    def setUp(self):
        super().setUp()
        requireMiniupnpd(self)

    def test_symmetricPairConnectsThroughAMapping(self):
        """
        Behind two symmetric NATs, bob asks his router for a mapping over
        PCP and offers it; alice's path to bob is direct, via the mapped
        address; and when bob stops, the router's mapping is gone.
        """
        self.connectThroughMapping("PCP")

    def test_symmetricPairConnectsThroughANATPMPMapping(self):
        """
        When the router drops PCP, bob falls back to NAT-PMP after PCP's
        two tries, and the pair connects through that mapping just the
        same; when bob stops, it is gone.
        """
        self.connectThroughMapping("NAT-PMP", dropPCP=True)

    def connectThroughMapping(self, protocol, dropPCP=False):
        """
        Connect alice and bob behind two symmetric NATs through the mapping
        bob's router grants him over C{protocol}, and check that it is
        deleted when bob stops.
        """
        MAPPED = mappedLine(protocol)
        with Lab(natA="symmetric", natB="symmetric", alternateAddress=True) as lab, \
                Processes() as processes:
            globalise(lab)
            router = MiniUPnPd(lab).start()
            try:
                if dropPCP:
                    router.dropPCP()
                run = Run(lab, processes)
                run.startServer()
                run.startPeer("alice", "peerA", "alice", "bob")
                if not run.waitFor({("alice", re.compile("Waiting for bob"))}, 30):
                    raise AssertionError("alice did not register:\n" + run.transcript())
                start = time.monotonic()
                run.startPeer("bob", "peerB", "bob", "alice", extra=["--port-mapping"])
                wanted = {
                    ("bob", LISTENING),
                    ("bob", MAPPED),
                    ("alice", ALICE_UP),
                    ("alice", received("bob", "alice")),
                    ("bob", received("alice", "bob")),
                }
                seen = run.waitFor(wanted, 30)
                held = router.redirects()
                dropped = router.pcpDropped() if dropPCP else 0
                processes.stop("bob")
                deadline = time.monotonic() + 5
                while router.redirects() and time.monotonic() < deadline:
                    time.sleep(0.1)
                left = router.redirects()
                for label in ("alice", "server"):
                    processes.stop(label)
                run.lines += list(processes.lines(time.monotonic() + 5))
            finally:
                router.stop()
        transcript = run.transcript() + "\n--- miniupnpd ---\n" + router.output
        self.assertEqual(
            [(label, p.pattern) for label, p in wanted if (label, p) not in seen], [], transcript
        )
        external = seen[("bob", MAPPED)][1].group(1)
        port = seen[("bob", MAPPED)][1].group(2)
        self.assertEqual(external.split(":")[0], GLOBAL_PUBLIC)
        self.assertEqual(seen[("alice", ALICE_UP)][1].groups(), (external, "mapped"), transcript)
        self.assertEqual(
            [rule for rule in held if rule.endswith(f"dnat ip to {lab.peerBAddress}:{port}")],
            held,
            transcript,
        )
        self.assertEqual(len(held), 1, transcript)
        # PCP's two tries, silently dropped, before NAT-PMP.
        self.assertEqual(dropped, 2 if dropPCP else 0, transcript)
        self.assertEqual(left, [], transcript)
        self.assertEqual([l for l in run.lines if "Traceback" in l[1]], [], transcript)
        listening = seen[("bob", LISTENING)][0]
        mapped = seen[("bob", MAPPED)][0]
        up = seen[("alice", ALICE_UP)][0]
        print(
            f"\n{protocol}: after bob's start: listening {(listening - start) * 1000:.0f} ms,"
            f" port mapping {(mapped - start) * 1000:.0f} ms"
            f" ({(mapped - listening) * 1000:.0f} ms after listening),"
            f" alice's direct path via it {(up - start) * 1000:.0f} ms"
        )
