"""
Userspace one-way delay line for the NAT lab (stdlib only).

The test kernel has no ``sch_netem`` and no nftables ``queue`` expression
(``CONFIG_NFT_QUEUE`` is unset), so the lab delays packets with a TUN device
instead: the internet-router namespace routes every packet that arrives on a
lab link (policy routing, ``ip rule add iif LINK lookup TABLE``) into the TUN
device, this program reads each packet, holds it for ``--delay`` seconds and
writes it back into the same TUN device, from where the kernel forwards it
normally (packets coming *from* the TUN device use the main routing table).

Run it inside the namespace that should own the device::

    ip netns exec NS python delayer.py --tun dly0 --delay 0.04

It prints ``ready`` on stdout once the device exists, and exits when its
standard input reaches end-of-file (so it dies with the lab process that
spawned it), on SIGTERM/SIGINT, or after ``--max-lifetime`` seconds.  The
device disappears with it (it is not persistent).
"""

import argparse
import collections
import errno
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def openTun(name):
    """
    Create (or attach to) the TUN device C{name} in the current network
    namespace and return its non-blocking file descriptor.
    """
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    try:
        ifr = struct.pack("16sH22x", name.encode("ascii"), IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd


def run(tun, delay, limit=20000, maxLifetime=None, out=sys.stdout):
    """
    Delay every packet read from C{tun} by C{delay} seconds, keeping order.
    At most C{limit} packets are held at once (beyond that they are dropped,
    like a full router buffer).
    """
    fd = openTun(tun)
    stopping = []

    def onSignal(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, onSignal)
    signal.signal(signal.SIGINT, onSignal)
    held = collections.deque()
    stats = {"delayed": 0, "dropped": 0, "writeErrors": 0}
    start = time.monotonic()
    out.write("ready\n")
    out.flush()
    stdinOpen = True
    try:
        while not stopping:
            now = time.monotonic()
            if maxLifetime is not None and now - start > maxLifetime:
                break
            # Release everything that is due.
            while held and held[0][0] <= now:
                _, packet = held.popleft()
                try:
                    os.write(fd, packet)
                    stats["delayed"] += 1
                except OSError:
                    stats["writeErrors"] += 1
            timeout = 0.5
            if held:
                timeout = max(0.0, min(timeout, held[0][0] - now))
            readers = [fd] + ([0] if stdinOpen else [])
            try:
                readable, _, _ = select.select(readers, [], [], timeout)
            except InterruptedError:
                continue
            if 0 in readable:
                try:
                    data = os.read(0, 4096)
                except OSError:
                    data = b""
                if not data:
                    # Our parent (the lab) went away: stop.
                    break
            if fd in readable:
                arrival = time.monotonic()
                for _ in range(256):
                    try:
                        packet = os.read(fd, 65536)
                    except OSError as e:
                        if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                            break
                        raise
                    if len(held) >= limit:
                        stats["dropped"] += 1
                        continue
                    held.append((arrival + delay, packet))
    finally:
        os.close(fd)
    return stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--tun", required=True, help="TUN device name")
    parser.add_argument(
        "--delay", type=float, required=True, help="delay in seconds"
    )
    parser.add_argument("--limit", type=int, default=20000)
    parser.add_argument("--max-lifetime", type=float, default=None)
    args = parser.parse_args(argv)
    if args.delay < 0:
        parser.error("delay must be >= 0")
    stats = run(args.tun, args.delay, args.limit, args.max_lifetime)
    if stats["dropped"] or stats["writeErrors"]:
        sys.stderr.write("delayer %s: %r\n" % (args.tun, stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
