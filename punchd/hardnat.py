"""
Punching through a NAT that maps per destination, when the other peer's
NAT keeps one mapping: many ports at once, instead of one.

A NAT that maps per destination (a symmetric one) gives the socket a new
public port for the other peer, which nobody can tell in advance; a
port-restricted cone NAT in front of the other peer lets in only the exact
address and port it sent to.  So each side makes many guesses at once, the
birthday paradox doing the rest (Tailscale's analysis, "How NAT traversal
works"): the hard side opens many sockets (C{256}) and probes the easy
side's one public address from each, making as many mappings in its NAT;
the easy side probes ports of the hard side's public IP (up to L{BUDGET},
L{RATE} a second), opening its own NAT to each.  A guess that meets one of
the mappings gets an answer, and the path runs over that socket.  With 256
mappings of 64,512 ports, 1,024 probes meet one in about 98% of tries, and
2,048 in about 99.97%; at 400 a second, 1,700 probes (99.9%) take 4.3 s.

Every probe is an authenticated punch probe, and they go only to the
public IP the stage manager saw for the peer.  Nothing here does I/O: the
choice of role and of the ports to probe are pure.
"""

from punchd.natprobe import ADDRESS_AND_PORT_DEPENDENT, ENDPOINT_INDEPENDENT

#: This side's NAT maps per destination and the peer's does not: it opens
#: many sockets and probes the peer's one address from each.
HARD = "hard"

#: This side's NAT keeps one mapping and the peer's maps per destination:
#: it probes many ports of the peer's public IP.
EASY = "easy"

#: How many sockets the hard side opens.
SOCKETS = 256

#: How many ports of the hard side's public IP the easy side probes, at
#: most.
BUDGET = 2048

#: Probes a second, on either side: 30 KB a second of 76-byte probes, to
#: the one IP.
RATE = 400.0

#: The ports a NAT may map to.
PORTS = range(1024, 65536)

#: How many ports past the one the stage manager saw are probed first.
PREDICTED = 512


def role(mine, theirs) -> "str | None":
    """
    Which part of a many-port punch this side plays.

    @param mine: This peer's NAT C{(mapping, filtering)}, or L{None} if not
        known.
    @param theirs: The contact's, the same.
    @return: L{HARD}, L{EASY}, or L{None} when both NATs map alike (both
        keep one mapping, so one probe does; or both map per destination,
        where guessing both ports at once has no useful odds), when the
        one that keeps one mapping lets in any port of an address it sent
        to (the other's probes from its new port get in, and one probe
        does), or either is not known.
    """
    if mine is None or theirs is None:
        return None
    mineHard = mine[0] != ENDPOINT_INDEPENDENT
    theirsHard = theirs[0] != ENDPOINT_INDEPENDENT
    if mineHard == theirsHard:
        return None
    easy = theirs if mineHard else mine
    if easy[1] != ADDRESS_AND_PORT_DEPENDENT:
        return None
    return HARD if mineHard else EASY


def portsToProbe(seen: int, count: int, random) -> list:
    """
    The ports of a hard NAT's public IP to probe, in order: first the
    L{PREDICTED} ports after C{seen}, where a NAT that allocates in
    sequence puts the peer's new sockets; then distinct random ones.

    Putting the predicted ports first costs nothing against a NAT that
    allocates at random: to it any port is as good a guess as any other.

    @param seen: The peer's public port as the stage manager saw it.
    @param count: How many ports, at most.
    @param random: A L{random.Random}.
    @return: A L{list} of C{count} distinct ports in L{PORTS}, none of them
        C{seen}.
    """
    count = min(count, len(PORTS) - 1)
    ports = []
    chosen = {seen}
    for port in range(seen + 1, seen + 1 + PREDICTED):
        if len(ports) == count:
            return ports
        if port in PORTS:
            ports.append(port)
            chosen.add(port)
    while len(ports) < count:
        port = random.randrange(PORTS.start, PORTS.stop)
        if port not in chosen:
            chosen.add(port)
            ports.append(port)
    return ports


class SideSource(tuple):
    """
    A peer's address as one of this peer's extra sockets sees it:
    C{(host, port, socket)}, so that it equals no address reached from the
    peer's own socket; C{[0]} and C{[1]} are the host and port, as for any
    address, and datagrams to it go from that socket.
    """

    __slots__ = ()

    def __new__(cls, peer, socket: int):
        return tuple.__new__(cls, (peer[0], peer[1], socket))

    @property
    def peer(self):
        """
        The C{(host, port)}.
        """
        return (self[0], self[1])

    @property
    def socket(self) -> int:
        """
        The number of the extra socket.
        """
        return self[2]
