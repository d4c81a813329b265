"""
The stage manager's phonebook: a bounded, expiring registry of peers, in
memory (an L{punchd.interfaces.IPhonebook}).

Pure logic: no I/O, and time is passed in by the caller.  Every operation
costs the same whatever the size of the phonebook: entries are kept in an
ordered dictionary from least to most recently seen, so the entries to
expire are at its front.

A full phonebook refuses new names rather than forget a live entry, so that
nobody can flood it into forgetting a peer; and one source address and
port, and one IP, may hold only so many names, so that one source cannot
fill it alone.
"""

from collections import OrderedDict
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

from zope.interface import implementer

from punchd.interfaces import IPhonebook

# A phonebook may hold a million entries, so an entry keeps its addresses
# packed: a (host, port) pair of objects takes some 150 bytes, its packed
# form 40 (one bytes object).  An address whose text would not come back
# the same from its packed form (an IPv6 scope, a form that is not
# canonical) is kept as it was given.
_PACKED_LENGTHS = {6: AF_INET, 18: AF_INET6}


def _pack(address):
    """
    Pack C{(host, port)} into 6 bytes (IPv4) or 18 (IPv6), or return it as
    it is if it does not pack and unpack to itself.
    """
    try:
        host, port = address
        if ":" in host:
            packed = inet_pton(AF_INET6, host)
            if inet_ntop(AF_INET6, packed) != host:
                return address
        else:
            packed = inet_pton(AF_INET, host)
        return packed + port.to_bytes(2, "big")
    except (TypeError, ValueError, OSError, OverflowError, AttributeError):
        return address


def _unpack(packed):
    if type(packed) is not bytes:
        return packed
    return inet_ntop(_PACKED_LENGTHS[len(packed)], packed[:-2]), int.from_bytes(
        packed[-2:], "big"
    )


def _packAll(addresses):
    """
    Pack a tuple of addresses into one bytes object, each packed address
    after a byte giving its length; or return the tuple if one does not
    pack.
    """
    if not addresses:
        return b""
    parts = []
    for address in addresses:
        packed = _pack(address)
        if type(packed) is not bytes:
            return tuple(addresses)
        parts.append(_LENGTH_BYTES[len(packed)] + packed)
    return b"".join(parts)


_LENGTH_BYTES = {length: bytes((length,)) for length in _PACKED_LENGTHS}


def _unpackAll(packed):
    if type(packed) is not bytes:
        return packed
    addresses = []
    offset = 0
    while offset < len(packed):
        length = packed[offset]
        addresses.append(_unpack(packed[offset + 1 : offset + 1 + length]))
        offset += 1 + length
    return tuple(addresses)


def _place(secret, address, localAddresses, previous=None):
    """
    Pack an entry's secrets, address and local addresses into one bytes
    object: a byte giving the secret's length plus one (0 for no secret),
    with its high bit set when the previous secret follows, then the secret
    and the previous secret, of the same length; a byte giving the packed
    address's length and the packed address; the packed local addresses
    (see L{_packAll}).  One object of some 80 bytes instead of four (and
    more, the secrets', when they are kept apart): a third of what an
    entry takes.

    @return: The bytes, or the tuple C{(secret, address, localAddresses,
        previous)} if something does not pack.
    """
    packed = _pack(address)
    packedLocals = _packAll(localAddresses)
    if (
        type(packed) is not bytes
        or type(packedLocals) is not bytes
        or (secret is not None and (type(secret) is not bytes or len(secret) > 126))
        or (
            previous is not None
            and (secret is None or type(previous) is not bytes or len(previous) != len(secret))
        )
    ):
        return (secret, address, tuple(localAddresses), previous)
    if secret is None:
        head = b"\x00"
    elif previous is None:
        head = bytes((len(secret) + 1,)) + secret
    else:
        head = bytes((0x80 | (len(secret) + 1),)) + secret + previous
    return head + _LENGTH_BYTES[len(packed)] + packed + packedLocals


def _at(place) -> int:
    """
    Where the packed address starts in a packed place: past the secrets.
    """
    head = place[0]
    if head == 0:
        return 1
    length = (head & 0x7F) - 1
    return 1 + (2 * length if head & 0x80 else length)


class PhonebookFull(Exception):
    """
    A new name, refused: the phonebook holds as many entries as it may.
    """


class SourceQuotaReached(Exception):
    """
    A name refused: the address and port it comes from, or their IP, hold
    as many names as they may.

    @ivar what: C{"address"} or C{"IP"}, the quota reached.
    @ivar limit: That quota.
    """

    def __init__(self, what: str, limit: int):
        super().__init__(f"{what} holds {limit} names, the most it may")
        self.what = what
        self.limit = limit


class Entry:
    """
    What the stage manager knows of one registered peer.

    @ivar name: The name the peer registered.
    @type name: L{str}

    @ivar address: The C{(host, port)} its registration arrived from: its
        NAT's public mapping.

    @ivar localAddresses: The C{(host, port)} pairs the peer reports for
        itself on its own network.
    @type localAddresses: L{tuple}

    @ivar wants: The names of the peers it wants to reach, its contacts.
    @type wants: L{tuple}

    @ivar lastSeen: When it last registered, in seconds.
    @type lastSeen: L{float}

    @ivar secret: The name's secret as it stands: the one the stage manager
        gave the first registrant of the name, or the last L{nextSecret
        <punchd.messages.nextSecret>} of it; L{None} for a peer of another
        protocol (an L{punchd.interfaces.IServerDialect}'s).
    @type secret: L{bytes}

    @ivar previousSecret: The secret it replaced, still good for one round
        in case the answer that replaced it was lost; or L{None}.
    @type previousSecret: L{bytes}

    @ivar proven: Whether the last registration echoed a cookie, proving
        that the peer receives at C{address}: only then does the stage
        manager send it more than it was sent.
    @type proven: L{bool}

    @ivar nat: How the peer's NAT maps and filters, as its last full
        registration said (one of the pairs L{punchd.messages} shares), or
        L{None}.

    @ivar second: The peer's public address of its other family (a
        dual-stack peer's IPv6 one, say) and until when it holds, as a
        2-tuple; or L{None}.  See L{secondAddress}.
    """

    __slots__ = ("name", "_place", "_wants", "lastSeen", "proven", "nat", "second")

    def __init__(
        self,
        name,
        address,
        localAddresses,
        wants,
        lastSeen,
        proven=False,
        secret=None,
        previousSecret=None,
        nat=None,
    ):
        self.name = name
        self._place = _place(secret, address, localAddresses, previousSecret)
        self.wants = wants
        self.lastSeen = lastSeen
        self.proven = proven
        self.nat = nat
        self.second = None

    def secondAddress(self, now):
        """
        The peer's public address of its other family, if it told one that
        still holds at C{now}; else L{None}.
        """
        second = self.second
        if second is None or second[1] <= now:
            return None
        return second[0]

    # Most peers want one contact: its name alone is kept, not a tuple of
    # it, which would cost 48 bytes more per entry.

    @property
    def wants(self):
        wants = self._wants
        return (wants,) if type(wants) is str else wants

    @wants.setter
    def wants(self, wants):
        self._wants = wants[0] if len(wants) == 1 else tuple(wants)

    # The secret, the address and the local addresses live in one bytes
    # object, _place: see _place().

    @property
    def secret(self):
        place = self._place
        if type(place) is not bytes:
            return place[0]
        return None if place[0] == 0 else place[1 : (place[0] & 0x7F)]

    @secret.setter
    def secret(self, secret):
        self._place = _place(secret, self.address, self.localAddresses)

    @property
    def previousSecret(self):
        place = self._place
        if type(place) is not bytes:
            return place[3]
        if not place[0] & 0x80:
            return None
        length = (place[0] & 0x7F) - 1
        return place[1 + length : 1 + 2 * length]

    def setSecrets(self, secret, previous=None):
        """
        Replace the name's secret, and the previous one.
        """
        self._place = _place(secret, self.address, self.localAddresses, previous)

    @property
    def address(self):
        place = self._place
        if type(place) is not bytes:
            return place[1]
        at = _at(place)
        return _unpack(place[at + 1 : at + 1 + place[at]])

    @address.setter
    def address(self, address):
        self._place = _place(self.secret, address, self.localAddresses, self.previousSecret)

    @property
    def localAddresses(self):
        place = self._place
        if type(place) is not bytes:
            return place[2]
        at = _at(place)
        return _unpackAll(place[at + 1 + place[at] :])

    @localAddresses.setter
    def localAddresses(self, localAddresses):
        self._place = _place(self.secret, self.address, localAddresses, self.previousSecret)

    def moveTo(self, address, localAddresses):
        """
        Set the address and the local addresses at once, keeping the
        secrets.
        """
        place = self._place
        if type(place) is bytes:
            packed = _place(None, address, localAddresses)
            if type(packed) is bytes:
                self._place = place[: _at(place)] + packed[1:]
                return
        self._place = _place(self.secret, address, localAddresses, self.previousSecret)

    def copy(self) -> "Entry":
        """
        A copy of this entry as it is now.
        """
        copy = type(self).__new__(type(self))
        copy.name = self.name
        copy._place = self._place
        copy._wants = self._wants
        copy.lastSeen = self.lastSeen
        copy.proven = self.proven
        copy.nat = self.nat
        copy.second = self.second
        return copy

    def samePlace(self, other: "Entry") -> bool:
        """
        Whether C{other} has the same address, local addresses and wanted
        peer as this entry: whether a registration that turned one into the
        other was a mere refresh.
        """
        if self._wants != other._wants:
            return False
        mine, theirs = self._place, other._place
        if type(mine) is bytes and type(theirs) is bytes:
            return mine[_at(mine) :] == theirs[_at(theirs) :]
        return (self.address, self.localAddresses) == (other.address, other.localAddresses)

    def __repr__(self) -> str:
        return (
            f"<Entry {self.name!r} at {self.address!r} "
            f"local={self.localAddresses!r} wants={self.wants!r}>"
        )


#: The most names one source address and port may hold, by default: a
#: peer holds one, and a few more leave room for a port a carrier-grade NAT
#: gives another user before the last one's entry has expired.
NAMES_PER_ADDRESS = 4

#: The most names one IP may hold, by default: room for 2,000 peers behind
#: one carrier-grade NAT address.
NAMES_PER_IP = 2000


def checkBounds(maxEntries, ttl, namesPerAddress, namesPerIP):
    """
    Check the bounds of a phonebook, whatever keeps it.

    @raise ValueError: If one is out of range, saying which.
    """
    if maxEntries < 1:
        raise ValueError(f"maxEntries must be at least 1, not {maxEntries}")
    if ttl <= 0:
        raise ValueError(f"ttl must be positive, not {ttl}")
    if namesPerAddress < 1 or namesPerIP < namesPerAddress:
        raise ValueError(
            f"namesPerAddress must be at least 1 and namesPerIP at least that,"
            f" not {namesPerAddress} and {namesPerIP}"
        )


@implementer(IPhonebook)
class Phonebook:
    """
    Name to L{Entry}, bounded in size, with entries that expire.

    @ivar maxEntries: The most entries held; a new name is refused when
        full (L{PhonebookFull}), and no entry is forgotten before it
        expires.

    @ivar ttl: Seconds an entry lives without being refreshed.

    @ivar namesPerAddress: The most names one source address and port may
        hold.

    @ivar namesPerIP: The most names one source IP may hold.
    """

    def __init__(
        self,
        maxEntries: int,
        ttl: float,
        namesPerAddress: int = NAMES_PER_ADDRESS,
        namesPerIP: int = NAMES_PER_IP,
    ):
        checkBounds(maxEntries, ttl, namesPerAddress, namesPerIP)
        self.maxEntries = maxEntries
        self.ttl = ttl
        self.namesPerAddress = namesPerAddress
        self.namesPerIP = namesPerIP
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()
        # How many names each source (host, port), and each host, holds.
        self._perAddress: "dict[tuple, int]" = {}
        self._perIP: "dict[str, int]" = {}

    def held(self, address) -> "tuple[int, int]":
        """
        How many names the source C{address} holds, and its IP.
        """
        return (
            self._perAddress.get((address[0], address[1]), 0),
            self._perIP.get(address[0], 0),
        )

    def _count(self, address, by: int):
        for counts, key in ((self._perAddress, (address[0], address[1])), (self._perIP, address[0])):
            count = counts.get(key, 0) + by
            if count:
                counts[key] = count
            else:
                del counts[key]

    def _admit(self, address):
        perAddress, perIP = self.held(address)
        if perAddress >= self.namesPerAddress:
            raise SourceQuotaReached("address", self.namesPerAddress)
        if perIP >= self.namesPerIP:
            raise SourceQuotaReached("IP", self.namesPerIP)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        """
        Iterate over the entries from least to most recently seen.
        """
        return iter(self._entries.values())

    def register(
        self,
        name,
        address,
        localAddresses,
        wants,
        now,
        proven=False,
        secret=None,
        previousSecret=None,
        nat=None,
    ):
        """
        Add C{name} or update it in place.

        @param proven: Whether the registration proved its address.
        @param secret: A new name secret for the entry, or L{None} to keep
            the ones it has.
        @param previousSecret: With C{secret}, the secret it replaces, still
            good for one round; or L{None}.
        @param nat: How the peer's NAT behaves, as its registration said,
            or L{None}.

        @return: A 2-tuple: the L{Entry}; the L{Entry} as it was before,
            copied, or L{None} when the name is new.
        @raise PhonebookFull: If C{name} is new and the phonebook full.
        @raise SourceQuotaReached: If C{address}, or its IP, holds as many
            names as it may, and C{name} is not one of them.
        """
        entries = self._entries
        entry = entries.get(name)
        if len(wants) == 1:
            # The wanted peer's own name object, when it is here, rather
            # than a copy of it per entry.
            wanted = entries.get(wants[0])
            if wanted is not None:
                wants = (wanted.name,)
        if entry is None:
            if len(entries) >= self.maxEntries:
                raise PhonebookFull(f"the phonebook holds {self.maxEntries} entries")
            self._admit(address)
            previous = None
            entry = entries[name] = Entry(
                name, address, localAddresses, wants, now, proven, secret, previousSecret, nat
            )
            self._count(address, 1)
        else:
            old = entry.address
            moved = (old[0], old[1]) != (address[0], address[1])
            if moved:
                self._count(old, -1)
                try:
                    self._admit(address)
                except SourceQuotaReached:
                    self._count(old, 1)
                    raise
                self._count(address, 1)
            previous = entry.copy()
            if secret is None:
                entry.moveTo(address, localAddresses)
            else:
                entry._place = _place(secret, address, localAddresses, previousSecret)
            entry.wants = wants
            entry.lastSeen = now
            entry.proven = proven
            entry.nat = nat
            entries.move_to_end(name)
        return entry, previous

    def refresh(self, name, address, now) -> bool:
        """
        Keep C{name} another TTL from C{now}, with nothing else changed, if
        it is live and registered from C{address}.

        @return: Whether it is, and was kept.
        """
        entry = self._entries.get(name)
        if entry is None or entry.address != address or entry.lastSeen + self.ttl <= now:
            return False
        entry.lastSeen = now
        self._entries.move_to_end(name)
        return True

    def alsoAt(self, name, address, now) -> bool:
        """
        Record C{address} as the live entry C{name}'s public address of its
        other family, for a TTL from C{now}.

        @return: Whether there was such an entry.
        """
        entry = self.lookup(name, now)
        if entry is None:
            return False
        entry.second = (address, now + self.ttl)
        return True

    def lookup(self, name, now):
        """
        Find a live entry.

        @return: The L{Entry} for C{name}, or L{None} when there is none or
            it has expired.
        """
        entry = self._entries.get(name)
        if entry is None or entry.lastSeen + self.ttl <= now:
            return None
        return entry

    def remove(self, name):
        """
        Forget C{name}.

        @return: The removed L{Entry}, or L{None} if there was none.
        """
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._count(entry.address, -1)
        return entry

    def expire(self, now):
        """
        Remove every entry not refreshed within the TTL.

        Only the expired entries are visited.

        @return: The removed entries, oldest first.
        @rtype: L{list} of L{Entry}
        """
        entries = self._entries
        expired = []
        deadline = now - self.ttl
        while entries:
            oldest = next(iter(entries.values()))
            if oldest.lastSeen > deadline:
                break
            entry = entries.popitem(last=False)[1]
            self._count(entry.address, -1)
            expired.append(entry)
        return expired
