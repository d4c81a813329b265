"""
System tests: STUN clients that nobody here wrote, against a real
punch-server process on 127.0.0.1, report the reflexive address they came
from.

  - coturn's C{turnutils_stunclient} (Debian package coturn);
  - pystun3, a Python STUN client from PyPI (a test-only dependency).

A missing client skips its test with the reason, except under CI=true,
where it fails: CI must install it.
"""

import re
import shutil
import socket
import subprocess
import time

from twisted.trial.unittest import TestCase

from punchd.demo import Processes
from punchd.test.optional import notInstalled, require
from tests.processes import TREE_TWISTD, startServer

try:
    import stun as pystun3
except ImportError:  # pragma: no cover
    pystun3 = None
else:
    if not hasattr(pystun3, "get_nat_type"):
        # Another distribution's module called stun.
        pystun3 = None

REFLEXIVE = re.compile(r"UDP reflexive addr: (\d+\.\d+\.\d+\.\d+):(\d+)")


def ephemeralPorts():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = map(int, f.read().split())
    except OSError:
        low, high = 1024, 65535
    return range(low, high + 1)


class StunClientTests(TestCase):
    """
    Standard STUN clients against a real punch-server.
    """

    def setUp(self):
        self.processes = Processes()
        self.addCleanup(self.processes.stopAll)
        (_, self.port), _ = startServer(self, self.processes, [], twistd=TREE_TWISTD)

    def test_turnutilsStunclient(self):
        """
        coturn's C{turnutils_stunclient}, sending from 127.0.0.2, is told
        that it came from 127.0.0.2 and an ephemeral port.
        """
        client = shutil.which("turnutils_stunclient")
        require(self, client, "turnutils_stunclient is not installed (apt-get install coturn)")
        result = subprocess.run(
            [client, "-p", str(self.port), "-L", "127.0.0.2", "127.0.0.1"],
            capture_output=True,
            text=True,
            timeout=20,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        found = REFLEXIVE.findall(result.stdout)
        self.assertTrue(found, f"no reflexive address in: {result.stdout!r}")
        for host, port in found:
            self.assertEqual(host, "127.0.0.2")
            self.assertIn(int(port), ephemeralPorts())
            self.assertNotEqual(int(port), self.port)

    def test_pystun3(self):
        """
        pystun3, a classic RFC 3489 client, on a socket of ours, is told the
        socket's own address, and so finds no NAT: "Open Internet".
        """
        require(self, pystun3 is not None, notInstalled("pystun3"))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            s.settimeout(2)
            started = time.monotonic()
            natType, answer = pystun3.get_nat_type(
                s, "127.0.0.1", s.getsockname()[1], stun_host="127.0.0.1", stun_port=self.port
            )
            self.assertLess(time.monotonic() - started, 10)
            self.assertEqual(
                (natType, answer["ExternalIP"], answer["ExternalPort"]),
                (pystun3.OpenInternet, "127.0.0.1", s.getsockname()[1]),
            )
