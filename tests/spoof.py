"""
What the attack suite uses to play an off-path attacker on loopback: UDP
datagrams with any 127.0.0.0/8 source address, sent through a raw socket,
and victims' sockets that count what reaches them.

Every address here, source or destination, must be in 127.0.0.0/8: the
attacks never leave the machine.
"""

import os
import socket
import struct
import time
from ipaddress import IPv4Address, IPv4Network

from punchd.test.optional import require

LOOPBACK = IPv4Network("127.0.0.0/8")


def _onLoopback(address):
    host, port = address
    if IPv4Address(host) not in LOOPBACK:
        raise ValueError(f"{host} is not in {LOOPBACK}: the attack suite stays on loopback")
    if not 0 < port < 65536:
        raise ValueError(f"port {port}")


def requireRawSockets(testCase):
    """
    Skip C{testCase} unless this process may open raw sockets (as root);
    with C{CI=true} in the environment, fail it instead, so that CI never
    passes without running the attacks.
    """
    reason = None
    if os.geteuid() != 0:
        reason = "spoofing source addresses needs raw sockets: run the attack suite as root"
    else:
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        except OSError as e:
            reason = f"no raw socket: {e}"
    require(testCase, reason is None, reason)


def udpPacket(source, destination, payload: bytes) -> bytes:
    """
    An IPv4 packet carrying a UDP datagram from C{source} to
    C{destination}, both C{(host, port)} in 127.0.0.0/8, with no UDP
    checksum (which IPv4 allows) and the IP checksum left to the kernel.
    """
    _onLoopback(source)
    _onLoopback(destination)
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        0,
        0x4000,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source[0]),
        socket.inet_aton(destination[0]),
    )
    return header + udp


class Spoofer:
    """
    Send UDP datagrams with a forged source address, counting what was
    sent: the attacker's cost.

    @ivar datagrams: How many were sent.
    @ivar bytes: How many bytes of UDP payload were sent.
    """

    def __init__(self):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self._socket.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.datagrams = 0
        self.bytes = 0

    def send(self, payload: bytes, source, destination):
        """
        Send C{payload} to C{destination} as if from C{source}.
        """
        packet = udpPacket(source, destination, payload)
        for _ in range(100):
            try:
                self._socket.sendto(packet, (destination[0], 0))
                break
            except BlockingIOError:
                time.sleep(0.001)
        else:
            raise OSError("the raw socket stayed full for 100 ms")
        self.datagrams += 1
        self.bytes += len(payload)

    def close(self):
        self._socket.close()


class Victim:
    """
    A UDP socket at a victim's address, which counts what reaches it, by
    source.

    @ivar address: Its C{(host, port)}.
    @ivar datagrams: The datagrams received, as C{(payload, source)}.
    """

    def __init__(self, host: str, port: int = 0):
        _onLoopback((host, port or 1))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self._socket.bind((host, port))
        self._socket.setblocking(False)
        self.address = self._socket.getsockname()
        self.datagrams = []

    def fileno(self):
        return self._socket.fileno()

    def drain(self):
        """
        Read whatever has arrived.

        @return: The datagrams read now.
        """
        new = []
        for _ in range(100_000):
            try:
                new.append(self._socket.recvfrom(65536))
            except BlockingIOError:
                break
        self.datagrams += new
        return new

    def sendto(self, payload: bytes, address):
        _onLoopback(address)
        self._socket.sendto(payload, address)

    @property
    def bytes(self) -> int:
        return sum(len(payload) for payload, _ in self.datagrams)

    def bytesFrom(self, source) -> int:
        """
        Bytes received from C{source}, C{(host, port)}.
        """
        return sum(len(payload) for payload, where in self.datagrams if where == source)

    def close(self):
        self._socket.close()


def hosts(first: int, count: int, prefix: str = "127.0.5."):
    """
    C{count} victim addresses from C{prefix + str(first)} on.
    """
    return [f"{prefix}{first + i}" for i in range(count)]


class Sniffer:
    """
    Capture, as root, the UDP datagrams that loopback carries to or from
    one port: what an on-path observer sees.  It only listens.

    @ivar datagrams: C{(source, destination, payload)} of each, in order.
    """

    def __init__(self, port: int):
        self._port = port
        # ETH_P_IP: IPv4 packets, the link header taken off (SOCK_DGRAM).
        self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self._socket.bind(("lo", 0))
        self._socket.setblocking(False)
        self.datagrams = []

    def drain(self):
        for _ in range(100_000):
            try:
                packet, where = self._socket.recvfrom(65536)
            except BlockingIOError:
                return
            # Loopback shows each packet twice, going out and coming in:
            # only what comes in (PACKET_HOST) counts.
            if where[2] != socket.PACKET_HOST or len(packet) < 28 or packet[9] != socket.IPPROTO_UDP:
                continue
            start = (packet[0] & 0x0F) * 4
            sport, dport, length = struct.unpack("!HHH", packet[start : start + 6])
            if self._port not in (sport, dport):
                continue
            source = (socket.inet_ntoa(packet[12:16]), sport)
            destination = (socket.inet_ntoa(packet[16:20]), dport)
            self.datagrams.append((source, destination, packet[start + 8 : start + length]))

    def close(self):
        self._socket.close()
