"""
A flood of hostile datagrams against a real punch-server process on
loopback, after which a legitimate pair must still connect.
"""

import random
import re
import socket
import threading
import time
import urllib.request

from twisted.trial.unittest import TestCase

from punchd import messages, stun
from punchd.demo import Processes
from punchd.test.optional import notInstalled, require
from tests.processes import TWISTD, bothReceived, startServer, waitFor

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None

METRICS = re.compile(r"Metrics for Prometheus at (http://\S+/metrics)")

#: How many datagrams the flood sends, and for how long at most.
FLOOD_DATAGRAMS = 200_000
FLOOD_SECONDS = 60
#: How many source addresses (127.0.0.2 up) and ports per address.
SOURCE_ADDRESSES = 16
PORTS_PER_ADDRESS = 8
MAX_CLIENTS = 10_000
#: How much the server's resident memory may grow under the flood.
MEMORY_BOUND = 64 * 1024 * 1024


def hostileDatagrams(rng, count):
    """
    A mix of what an attacker sends: random bytes, truncated and mutated
    STUN, registrations of random names (padded and not, valid and not),
    goodbyes and acknowledgements for nothing, Binding requests, the
    original's text, and oversized datagrams.
    """
    def name():
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(1, 64)))

    def txid():
        return rng.randbytes(12)

    def seeker():
        wanted = name()
        return messages.Registration(name(), (wanted,), (), (wanted,))

    makers = [
        lambda: rng.randbytes(rng.randint(0, 200)),
        lambda: messages.encodeRegistration(txid(), seeker())[: rng.randint(0, 60)],
        lambda: messages.encodeRegistration(
            txid(), seeker(), messages.UNPROVEN_REGISTRATION_BYTES
        ),
        lambda: messages.encodeRegistration(txid(), messages.Registration(name(), (), (), (), rng.randbytes(16))),
        lambda: stun.encode(stun.Message(messages.REGISTER, stun.REQUEST, txid(), ((messages.NAME, rng.randbytes(80)),))),
        lambda: messages.encodeUnregister(txid(), name(), rng.randbytes(16)),
        lambda: messages.encodeSuccess(messages.INTRODUCE, txid()),
        lambda: stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid())),
        lambda: name().encode() + b"\n",
        lambda: rng.randbytes(1400),
    ]
    for _ in range(count):
        datagram = bytearray(rng.choice(makers)())
        if datagram and rng.random() < 0.2:
            datagram[rng.randrange(len(datagram))] ^= rng.randint(1, 255)
        yield bytes(datagram)


def flood(server, total, seconds):
    """
    Send C{total} hostile datagrams to C{server} from many source addresses
    and ports, stopping by itself after C{seconds}.

    @return: How many were sent.
    """
    rng = random.Random(5)
    pool = list(hostileDatagrams(rng, 2000))
    sockets = []
    try:
        for a in range(SOURCE_ADDRESSES):
            for _ in range(PORTS_PER_ADDRESS):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((f"127.0.0.{a + 2}", 0))
                s.setblocking(False)
                sockets.append(s)
        sent = 0
        deadline = time.monotonic() + seconds
        while sent < total and time.monotonic() < deadline:
            s = sockets[sent % len(sockets)]
            try:
                s.sendto(pool[sent % len(pool)], server)
            except BlockingIOError:
                time.sleep(0.001)
                continue
            sent += 1
            if sent % 500 == 0:
                # Let the server's socket buffer drain a little, so that the
                # flood is handled rather than dropped by the kernel.
                time.sleep(0.01)
        return sent
    finally:
        for s in sockets:
            s.close()


def residentBytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode("utf-8")
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


class FloodTests(TestCase):
    """
    punch-server under a flood.
    """

    def test_survivesFlood(self):
        """
        After 200,000 hostile datagrams from 128 source ports, the server is
        alive, its memory grew by less than the bound, it never sent more
        bytes than it received, and a legitimate pair connects.
        """
        require(self, text_string_to_metric_families is not None, notInstalled("prometheus_client"))
        with Processes() as processes:
            server, found = startServer(
                self,
                processes,
                ["--max-clients", str(MAX_CLIENTS), "--metrics-port", "0"],
                patterns={"metrics": METRICS},
            )
            url = found["metrics"].group(1)
            pid = processes.children["server"].pid
            before = residentBytes(pid)
            start = time.monotonic()
            result = []
            flooder = threading.Thread(
                target=lambda: result.append(flood(server, FLOOD_DATAGRAMS, FLOOD_SECONDS))
            )
            flooder.start()
            # Read the server's output meanwhile, so that it never waits on
            # a full pipe.
            while flooder.is_alive():
                for _ in processes.lines(time.monotonic() + 0.5):
                    pass
            flooder.join()
            elapsed = time.monotonic() - start
            [sent] = result
            for _ in processes.lines(time.monotonic() + 1):
                pass
            self.assertIsNone(processes.children["server"].poll(), "the server died")
            after = residentBytes(pid)
            values = scrape(url)

            target = f"{server[0]}:{server[1]}"
            processes.start("alice", TWISTD + ["punch-peer", "-s", target, "-n", "alice", "-c", "bob"])
            processes.start("bob", TWISTD + ["punch-peer", "-s", target, "-n", "bob", "-c", "alice"])
            seen, lines = waitFor(processes, bothReceived(), 30)
            self.assertEqual(len(seen), 2, f"the legitimate pair did not connect: {lines[-40:]}")

        received_ = values[("punchd_received_datagrams_total", ())]
        bytesIn = values[("punchd_received_bytes_total", ())]
        bytesOut = values[("punchd_sent_bytes_total", ())]
        dropped = {
            dict(labels)["reason"]: value
            for (name, labels), value in values.items()
            if name == "punchd_dropped_datagrams_total"
        }
        print(
            f"\nflood: {sent} datagrams sent in {elapsed:.1f} s, {received_:.0f} reached the server;"
            f" bytes out/in {bytesOut:.0f}/{bytesIn:.0f} = {bytesOut / bytesIn:.3f};"
            f" phonebook {values[('punchd_phonebook_entries', ())]:.0f} entries;"
            f" resident memory {before / 2**20:.1f} -> {after / 2**20:.1f} MiB;"
            f" dropped by reason: {dropped}"
        )
        self.assertGreaterEqual(sent, FLOOD_DATAGRAMS)
        self.assertLess(bytesOut, bytesIn)
        self.assertLessEqual(values[("punchd_phonebook_entries", ())], MAX_CLIENTS)
        self.assertLess(after - before, MEMORY_BOUND)
