"""
The stage manager's phonebook: a bounded, expiring registry of peers.

Pure logic: no I/O, and time is passed in by the caller.  Every operation
costs the same whatever the size of the phonebook: entries are kept in an
ordered dictionary from least to most recently seen, so both the entry to
evict when the phonebook is full and the entries to expire are at its front.
"""

from collections import OrderedDict


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
    """

    __slots__ = ("name", "address", "localAddresses", "wants", "lastSeen", "original")

    def __init__(self, name, address, localAddresses, wants, lastSeen, original=False):
        self.name = name
        self.address = address
        self.localAddresses = localAddresses
        self.wants = wants
        self.lastSeen = lastSeen
        self.original = original

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
        if entry is None:
            previous = None
            if len(entries) >= self.maxEntries:
                _, evicted = entries.popitem(last=False)
            entry = entries[name] = Entry(
                name, address, localAddresses, wants, now, original
            )
        else:
            previous = Entry(
                entry.name,
                entry.address,
                entry.localAddresses,
                entry.wants,
                entry.lastSeen,
                entry.original,
            )
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
