"""
The load generator: a process of its own that drives a STUN server on the
loopback with many source ports, each keeping a window of requests
outstanding, and reports what came back.

    python -m bench.loadgen --target 127.0.0.1:PORT --kind binding|register|refresh|first
        [--seconds 5] [--warmup 1] [--ports 50] [--window 4] [--names 20000]
        [--cpu-pid PID]

It prints one line of JSON: requests sent and answered in the measured
window, answered per second, loss, latency percentiles, its own CPU time,
and, with C{--cpu-pid}, the CPU time that process used during the window
(read from C{/proc/PID/stat}, so the figure is the whole process: user and
kernel time, every thread).

Only a loopback target is accepted, and the run ends by itself: warm-up,
the measured window, then at most C{--timeout} seconds to collect late
answers.

Kinds of request:

  - C{binding}: a bare RFC 8489 Binding request (a header and nothing
    else), as any STUN client sends.
  - C{register}: a punchd C{REGISTER} request as a peer sends it (C{NAME},
    C{PEER}, one C{LOCAL-ADDRESS}, C{FINGERPRINT}), for C{--names}
    distinct names.  Each name always comes from the same source port, as
    a peer's refreshes do; the warm-up registers every name once, so the
    measured window is the steady state of a full phonebook being
    refreshed.
  - C{refresh}: as C{register}, but once a name's registration has been
    answered with a refresh handle, the name sends compact C{REFRESH}
    requests with it: the steady state of a full phonebook of peers that
    changed nothing.
  - C{first}: the first registration of a new name each time, echoing the
    cookie of the source port, as a peer's first proven registration.
"""

import argparse
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import hmac
from hashlib import blake2s
import time
from array import array
from binascii import crc32

_COOKIE = 0x2112A442
_COOKIE_BYTES = struct.pack("!I", _COOKIE)
_BINDING_HEAD = struct.pack("!HH", 0x0001, 0) + _COOKIE_BYTES
_FINGERPRINT_HEAD = struct.pack("!HH", 0x8028, 4)
_FINGERPRINT_XOR = 0x5354554E
_UINT32 = struct.Struct("!I")
_TXID = struct.Struct("!IQ")
_NS = 1_000_000_000
# A COOKIE attribute's header (punchd.messages.COOKIE, 16 bytes), and the
# class bits of an error response in the second byte of its type (the first
# holds the other, C1, in its lowest bit).
_COOKIE_ATTRIBUTE = struct.pack("!HH", 0xC00C, 16)
_ERROR_CLASS = 0x10
# A NAME-SECRET attribute's header (punchd.messages.NAME_SECRET), and a
# MESSAGE-INTEGRITY's.
_SECRET_ATTRIBUTE = struct.pack("!HH", 0xC00D, 16)
_INTEGRITY_HEAD = struct.pack("!HH", 0x0008, 20)
_LENGTH = struct.Struct("!H")
# A NAME-NONCE's and a REFRESH-HANDLE's headers (punchd.messages).
_NONCE_ATTRIBUTE = struct.pack("!HH", 0xC00E, 16)
_HANDLE_ATTRIBUTE = struct.pack("!HH", 0xC010, 12)


def _refreshHeads():
    from punchd import messages

    return messages.REFRESH_HEAD, messages.REFRESH_PROOF_HEAD


_REFRESH_HEAD, _PROOF_HEAD = _refreshHeads()


def cpuTimes(pid):
    """
    User and system CPU seconds that process C{pid} has used.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpuSeconds(pid):
    """
    User plus system CPU seconds that process C{pid} has used.
    """
    return sum(cpuTimes(pid))


def rssBytes(pid="self"):
    """
    Resident memory of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def registrationTemplate(name, wants, local, cookie=None):
    """
    The parts of a C{REGISTER} request that do not depend on the transaction
    ID: the first 8 header bytes and the attributes before C{FINGERPRINT}.

    An IPv4 C{LOCAL-ADDRESS} is masked with the magic cookie alone, so the
    whole body is fixed; only the ID and the fingerprint change per request.

    @param cookie: The C{COOKIE} the stage manager gave this source, to
        echo, or L{None} before it gave one.
    """
    from punchd import messages, stun

    encoded = messages.encodeRegistration(
        bytes(12), messages.Registration(name, (wants,), (local,), (), cookie)
    )
    body = encoded[20:-8]
    head = encoded[:2] + struct.pack("!H", len(body) + 8) + _COOKIE_BYTES
    assert stun.decode(head + bytes(12) + body + _fingerprint(head + bytes(12) + body))
    return head, body


def _fingerprint(message):
    return _FINGERPRINT_HEAD + _UINT32.pack(crc32(message) ^ _FINGERPRINT_XOR)


def nameOf(index):
    return f"peer-{index:07d}"


def peerOf(n):
    """
    The name, wanted name and local address of made-up peer C{n}.
    """
    return nameOf(n), nameOf(n ^ 1), (f"192.168.{n % 250}.{n % 199 + 2}", 40000 + n % 20000)


class _Port:
    __slots__ = (
        "sock", "outstanding", "peers", "names", "nextName", "wrapped", "cookie", "keys", "sentFor",
        "secrets", "handles", "counters", "fresh",
    )

    def __init__(self, sock, peers):
        self.sock = sock
        self.outstanding = {}
        self.peers = peers
        self.names = [registrationTemplate(*peer) for peer in peers]
        self.nextName = 0
        self.wrapped = False
        self.cookie = None
        # Each name's registration key, once the stage manager gave it a
        # secret, and the name each registration in flight was of.  A name
        # proves the secret it was first given, which the stage manager
        # keeps taking as the previous one, as after a lost answer.
        self.keys = [None] * len(peers)
        self.sentFor = {}
        # With C{refresh}: each name's first secret, and its refresh handle
        # with its key, and the last counter sent with it.
        self.secrets = [None] * len(peers)
        self.handles = [None] * len(peers)
        self.counters = [0] * len(peers)
        # With C{first}: how many new names this port registered.
        self.fresh = 0

    def gotSecret(self, index, secret):
        """
        Prove C{secret} in the registrations of name C{index} from now on.
        """
        from punchd import messages

        if self.keys[index] is None:
            self.keys[index] = messages.registrationKey(secret)
            self.secrets[index] = secret

    def gotHandle(self, index, handle, secret, nonce):
        """
        Refresh name C{index} with C{handle} from now on, signed with the
        secret the answer left it: C{secret} given, or the next one made
        from its first with C{nonce}.
        """
        from punchd import messages

        if secret is None:
            if nonce is None or self.secrets[index] is None:
                return
            secret = messages.nextSecret(self.secrets[index], nonce)
        self.handles[index] = (handle, messages.refreshKey(secret))
        self.counters[index] = 0

    def gotCookie(self, cookie):
        """
        Echo C{cookie} from now on, and register every name again with it.
        """
        self.cookie = cookie
        self.names = [registrationTemplate(*peer, cookie) for peer in self.peers]
        self.nextName = 0
        self.wrapped = False


def run(target, kind, seconds, warmup, ports, window, names, cpuPid, timeout):
    """
    Drive C{target}; return the figures as a L{dict}.
    """
    host, port = target
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"the load generator drives the loopback only, not {host}")
    poller = select.epoll()
    byFd = {}
    for i in range(ports):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # Each port on an address of its own, 127.0.0.2 and up, so that a
        # server that keeps state per source address sees many, as it would
        # on the internet.
        sock.bind((f"127.0.{(i + 2) >> 8}.{(i + 2) & 255}", 0))
        sock.connect((host, port))
        sock.setblocking(False)
        peers = (
            [peerOf(n) for n in range(i, names, ports)] if kind in ("register", "refresh") else []
        )
        byFd[sock.fileno()] = _Port(sock, peers)
        poller.register(sock.fileno(), select.EPOLLIN)

    counter = 0
    clock = time.perf_counter_ns

    def send(p):
        nonlocal counter
        counter += 1
        txid = _TXID.pack(p.sock.fileno(), counter)
        if kind == "binding":
            datagram = _BINDING_HEAD + txid
        elif kind == "first":
            from punchd import messages

            p.fresh += 1
            # Padded, as a peer's are, so that the cookie challenge to the
            # first is no larger.
            datagram = messages.encodeRegistration(
                txid,
                messages.Registration(
                    f"first-{p.sock.fileno()}-{p.fresh}",
                    ("nobody",),
                    (("192.168.1.2", 40000),),
                    (),
                    p.cookie,
                ),
                messages.UNPROVEN_REGISTRATION_BYTES,
            )
        elif kind == "refresh" and p.handles[p.nextName] is not None:
            index = p.nextName
            p.nextName += 1
            if p.nextName == len(p.names):
                p.nextName = 0
                p.wrapped = True
            handle, key = p.handles[index]
            p.counters[index] += 1
            packed = _UINT32.pack(p.counters[index])
            datagram = (
                _REFRESH_HEAD + txid + _PROOF_HEAD + handle + packed
                + blake2s(txid + handle + packed, key=key, digest_size=12).digest()
            )
        else:
            index = p.nextName
            head, body = p.names[index]
            p.nextName += 1
            if p.nextName == len(p.names):
                p.nextName = 0
                p.wrapped = True
            key = p.keys[index]
            if key is None:
                message = head + txid + body
                p.sentFor[txid] = index
            else:
                # MESSAGE-INTEGRITY over the message with the length up to
                # it, then the FINGERPRINT's length added (RFC 8489 14.5).
                signed = head[:2] + _LENGTH.pack(len(body) + 24) + _COOKIE_BYTES + txid + body
                message = (
                    head[:2] + _LENGTH.pack(len(body) + 32) + signed[4:]
                    + _INTEGRITY_HEAD + hmac.digest(key, signed, "sha1")
                )
            datagram = message + _FINGERPRINT_HEAD + _UINT32.pack(
                crc32(message) ^ _FINGERPRINT_XOR
            )
        p.outstanding[txid] = clock()
        try:
            p.sock.send(datagram)
        except (BlockingIOError, ConnectionRefusedError):
            pass  # counted lost when its timeout passes

    timeoutNs = int(timeout * _NS)
    start = clock()
    measureFrom = start + int(warmup * _NS)
    measureTo = measureFrom + int(seconds * _NS)
    sentIn = answeredIn = receivedIn = late = lost = errors = 0
    latencies = array("q")
    cpuFrom = cpuTo = None
    procFrom = procTo = None
    measuring = False
    nextSweep = start
    for p in byFd.values():
        for _ in range(window):
            send(p)
    # Every name registers once before the window, however long that takes,
    # so that the window sees refreshes of known names.
    registeredOnce = kind not in ("register", "refresh")
    drainUntil = None
    while True:
        now = clock()
        if not measuring and drainUntil is None and now >= measureFrom and registeredOnce:
            measuring = True
            measureFrom = now
            measureTo = now + int(seconds * _NS)
            cpuFrom = cpuTimes(cpuPid) if cpuPid else None
            procFrom = time.process_time()
            sentBefore = counter
            print("MEASURING", flush=True)
        if measuring and now >= measureTo:
            measuring = False
            cpuTo = cpuTimes(cpuPid) if cpuPid else None
            procTo = time.process_time()
            sentIn = counter - sentBefore
            drainUntil = now + timeoutNs
        if drainUntil is not None and (now >= drainUntil or not any(
            p.outstanding for p in byFd.values()
        )):
            break
        if now - start > (warmup + seconds + 60) * _NS:
            raise SystemExit("the load generator ran out of time")
        for fd, _ in poller.poll(0.05):
            p = byFd[fd]
            recv = p.sock.recv
            outstanding = p.outstanding
            while True:
                try:
                    data = recv(2048)
                except BlockingIOError:
                    break
                except ConnectionRefusedError:
                    continue
                sentAt = outstanding.pop(data[8:20], None)
                if sentAt is None:
                    late += 1
                    continue
                now = clock()
                if kind == "first" and p.cookie is None:
                    at = data.find(_COOKIE_ATTRIBUTE, 20)
                    if at > 0:
                        p.cookie = data[at + 4 : at + 20]
                if kind in ("register", "refresh"):
                    if p.cookie is None:
                        at = data.find(_COOKIE_ATTRIBUTE, 20)
                        if at > 0:
                            p.gotCookie(data[at + 4 : at + 20])
                    index = p.sentFor.pop(data[8:20], None)
                    if index is not None:
                        at = data.find(_SECRET_ATTRIBUTE, 20)
                        secret = data[at + 4 : at + 20] if at > 0 else None
                        if secret is not None:
                            p.gotSecret(index, secret)
                        if kind == "refresh":
                            at = data.find(_HANDLE_ATTRIBUTE, 20)
                            if at > 0:
                                nonce = data.find(_NONCE_ATTRIBUTE, 20)
                                p.gotHandle(
                                    index,
                                    data[at + 4 : at + 12],
                                    secret,
                                    data[nonce + 4 : nonce + 20] if nonce > 0 else None,
                                )
                inWindow = sentAt >= measureFrom and (measuring or drainUntil is not None)
                if data[1] & _ERROR_CLASS and data[0] & 1:
                    # An error response: a challenge, a refusal.
                    if inWindow:
                        errors += 1
                else:
                    if measuring:
                        receivedIn += 1
                    if inWindow:
                        answeredIn += 1
                        latencies.append(now - sentAt)
                if drainUntil is None:
                    send(p)
        if now >= nextSweep:
            nextSweep = now + _NS // 10
            for p in byFd.values():
                expired = [t for t, at in p.outstanding.items() if now - at > timeoutNs]
                for t in expired:
                    if p.outstanding.pop(t) >= measureFrom and drainUntil is None:
                        lost += 1
                    if drainUntil is None:
                        send(p)
            if not registeredOnce:
                registeredOnce = all(p.wrapped for p in byFd.values())
    for p in byFd.values():
        poller.unregister(p.sock.fileno())
        p.sock.close()
    poller.close()
    window_s = (measureTo - measureFrom) / _NS
    lat = sorted(latencies)

    def percentile(q):
        if not lat:
            return None
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6

    result = {
        "kind": kind,
        "seconds": window_s,
        "ports": ports,
        "window": window,
        "names": names if kind in ("register", "refresh") else None,
        "sent": sentIn,
        "answered": answeredIn,
        "answeredPerSecond": receivedIn / window_s,
        "loss": (sentIn - answeredIn - errors) / sentIn if sentIn else None,
        "p50ms": percentile(0.50),
        "p99ms": percentile(0.99),
        "late": late,
        "errors": errors,
        "generatorCpuSeconds": procTo - procFrom,
    }
    if cpuFrom is not None and receivedIn:
        user = cpuTo[0] - cpuFrom[0]
        system = cpuTo[1] - cpuFrom[1]
        result["targetCpuSeconds"] = user + system
        result["targetCpuMicrosecondsPerAnswer"] = (user + system) / receivedIn * 1e6
        result["targetUserMicrosecondsPerAnswer"] = user / receivedIn * 1e6
        result["targetSystemMicrosecondsPerAnswer"] = system / receivedIn * 1e6
        result["targetCpuUtilisation"] = (user + system) / window_s
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--target", required=True, help="HOST:PORT on the loopback")
    parser.add_argument("--kind", choices=("binding", "register", "refresh", "first"), default="binding")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--ports", type=int, default=50, help="source ports")
    parser.add_argument("--window", type=int, default=4, help="outstanding requests per port")
    parser.add_argument("--names", type=int, default=20000, help="distinct names (register)")
    parser.add_argument("--cpu-pid", type=int, default=None, help="process whose CPU to read")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds before a request counts lost")
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    if not (0 < args.seconds <= 120 and 0 <= args.warmup <= 60):
        parser.error("--seconds must be in (0, 120] and --warmup in [0, 60]")
    result = run(
        (host, int(port)),
        args.kind,
        args.seconds,
        args.warmup,
        args.ports,
        args.window,
        args.names,
        args.cpu_pid,
        args.timeout,
    )
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
