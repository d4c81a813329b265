"""
The stage manager's phonebook: a bounded, expiring registry of peers.

Pure logic: no I/O, and time is passed in by the caller.  Every operation
costs the same whatever the size of the phonebook: entries are kept in an
ordered dictionary from least to most recently seen, so both the entry to
evict when the phonebook is full and the entries to expire are at its front.
"""

from collections import OrderedDict
from socket import AF_INET, AF_INET6, inet_ntop, inet_pton

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

    @ivar wants: The name of the peer it wants to reach, or L{None}.

    @ivar lastSeen: When it last registered, in seconds.
    @type lastSeen: L{float}

    @ivar original: Whether it registered in the original programs' text
        protocol (an original C{test-client}), so that it has no local
        addresses, says nothing of whom it wants, and must be spoken to in
        text.
    @type original: L{bool}

    @ivar secret: The secret the stage manager gave the first registrant of
        the name, which only its holder can present; L{None} for original
        clients.
    @type secret: L{bytes}

    @ivar proven: Whether the last registration echoed a cookie, proving
        that the peer receives at C{address}: only then does the stage
        manager send it more than it was sent.
    @type proven: L{bool}
    """

    __slots__ = (
        "name", "_address", "_localAddresses", "wants", "lastSeen", "original",
        "secret", "proven",
    )

    def __init__(self, name, address, localAddresses, wants, lastSeen, original=False):
        self.name = name
        self._address = _pack(address)
        self._localAddresses = _packAll(localAddresses)
        self.wants = wants
        self.lastSeen = lastSeen
        self.original = original
        self.secret = None
        self.proven = False

    @property
    def address(self):
        return _unpack(self._address)

    @address.setter
    def address(self, address):
        self._address = _pack(address)

    @property
    def localAddresses(self):
        return _unpackAll(self._localAddresses)

    @localAddresses.setter
    def localAddresses(self, localAddresses):
        self._localAddresses = _packAll(localAddresses)

    def copy(self) -> "Entry":
        """
        A copy of this entry as it is now.
        """
        copy = Entry.__new__(Entry)
        copy.name = self.name
        copy._address = self._address
        copy._localAddresses = self._localAddresses
        copy.wants = self.wants
        copy.lastSeen = self.lastSeen
        copy.original = self.original
        copy.secret = self.secret
        copy.proven = self.proven
        return copy

    def samePlace(self, other: "Entry") -> bool:
        """
        Whether C{other} has the same address, local addresses and wanted
        peer as this entry: whether a registration that turned one into the
        other was a mere refresh.
        """
        return (
            self._address == other._address
            and self._localAddresses == other._localAddresses
            and self.wants == other.wants
        )

    def __repr__(self) -> str:
        return (
            f"<Entry {self.name!r} at {self.address!r} "
            f"local={self.localAddresses!r} wants={self.wants!r}"
            f"{' original' if self.original else ''}>"
        )


class Phonebook:
    """
    Name to L{Entry}, bounded in size, with entries that expire.

    @ivar maxEntries: The most entries held; registering a new name when
        full evicts the least recently seen entry.

    @ivar ttl: Seconds an entry lives without being refreshed.
    """

    def __init__(self, maxEntries: int, ttl: float):
        if maxEntries < 1:
            raise ValueError(f"maxEntries must be at least 1, not {maxEntries}")
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl}")
        self.maxEntries = maxEntries
        self.ttl = ttl
        self._entries: "OrderedDict[str, Entry]" = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        """
        Iterate over the entries from least to most recently seen.
        """
        return iter(self._entries.values())

    def register(self, name, address, localAddresses, wants, now, original=False):
        """
        Add C{name} or update it in place.

        @param original: Whether the registration came in the original
            programs' text protocol; see L{Entry.original}.

        @return: A 3-tuple: the L{Entry}; the L{Entry} as it was before,
            copied, or L{None} when the name is new; and the L{Entry}
            evicted to make room, or L{None}.
        """
        entries = self._entries
        entry = entries.get(name)
        evicted = None
        if wants is not None:
            # The wanted peer's own name object, when it is here, rather
            # than a copy of it per entry.
            wanted = entries.get(wants)
            if wanted is not None:
                wants = wanted.name
        if entry is None:
            previous = None
            if len(entries) >= self.maxEntries:
                _, evicted = entries.popitem(last=False)
            entry = entries[name] = Entry(
                name, address, localAddresses, wants, now, original
            )
        else:
            previous = entry.copy()
            entry.address = address
            entry.localAddresses = localAddresses
            entry.wants = wants
            entry.lastSeen = now
            entry.original = original
            entries.move_to_end(name)
        return entry, previous, evicted

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
        return self._entries.pop(name, None)

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
            expired.append(entries.popitem(last=False)[1])
        return expired
