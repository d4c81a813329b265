"""
The stage manager's side of the original programs' text protocol
(C{punch-server --seed-compat}).

An original C{test-client} registers by sending its bare name, and expects
the phonebook back, one line per entry.  L{OriginalClients}, an
L{punchd.interfaces.IServerDialect}, takes those registrations into the
stage manager's own phonebook, remembers which entries are original
clients, and answers them the way the original server does, with these
differences:

  - An original client counts as proven once it registers from the same
    address again, L{PROOF_GAP} or more later; until then it is sent no
    more bytes than it sent, shown to nobody and introduced to nobody.
  - The answer lists at most L{ANSWER_LINES} entries (the original's 16
    slots): the registrant itself and the proven original clients most
    recently registered.  Native peers are never shown in an answer.
  - Answers are rate-limited for each source address, and in all: the
    original answers anyone, spoofed or not, with the whole table, a
    reflection amplifier.
  - When an original client registers for the first time, or from a new
    address, its entry is sent at once to the other original clients
    registered lately (at most L{PUSH_TARGETS} of them, within the same
    limits), and native peers that seek it are introduced to it, once it is
    proven; so peers
    need not wait for their next registration, some 30 s, to find it.

A native peer that seeks an original client is introduced to it (see
L{punchd.compat.introductions}), and its own entry is sent to that client at once: the original
client cannot say whom it wants, but the original protocol publishes its
entry to everyone anyway, and the native peer asked for it by name.
"""

from collections import OrderedDict

from twisted.logger import Logger
from zope.interface import implementer

from punchd.addresses import formatAddress, unmapped
from punchd.compat import protocol
from punchd.compat.introductions import encodeOriginalIntroduction
from punchd.interfaces import IServerDialect
from punchd.messages import InvalidMessage
from punchd.phonebook import PhonebookFull, SourceQuotaReached
from punchd.ratelimit import SourceLimiter, TokenBucket

#: The most entries in one answer: the original server's 16 slots.
ANSWER_LINES = protocol.ORIGINAL_SLOTS

#: The most original clients a new entry is sent to at once.
PUSH_TARGETS = protocol.ORIGINAL_SLOTS - 1

#: Datagrams a second, and at once, that one source address may be sent:
#: a few full answers at once, then one every few seconds.  An original
#: client registers about every 30 s.
SOURCE_RATE = 4.0
SOURCE_BURST = 4 * ANSWER_LINES

#: Datagrams a second, and at once, to all original clients together.
TOTAL_RATE = 2000.0
TOTAL_BURST = 4000.0

#: The most native peers remembered as seeking one name.
SEEKERS_PER_NAME = 16


#: Seconds between two registrations of an original client from one address
#: after which it counts as proven: more than a round trip.
PROOF_GAP = 1.0

#: Original clients' first proven registrations logged a second, and at
#: once; the others are counted only.
LOG_RATE = 1.0
LOG_BURST = 20.0


def _fitting(lines, size):
    """
    The first of C{lines} whose formatted text, together, fits in C{size}
    bytes.
    """
    fitting = []
    total = 0
    count = len(lines)
    for slot, (name, address) in enumerate(lines):
        total += len(protocol.formatLine(protocol.PhonebookLine(slot, count, name, address)))
        if total > size:
            break
        fitting.append((name, address))
    return fitting


def _ipv4(address):
    host, port = unmapped(address)
    return None if ":" in host else (host, port)


@implementer(IServerDialect)
class OriginalClients:
    """
    Answer original C{test-client}s, sharing the stage manager's phonebook.

    @ivar limiter: The L{SourceLimiter} that bounds what is sent, counted in
        datagrams, by destination address.
    """

    log = Logger()

    def __init__(
        self,
        clock,
        answerLines: int = ANSWER_LINES,
        pushTargets: int = PUSH_TARGETS,
        limiter: "SourceLimiter | None" = None,
    ):
        """
        @param clock: The L{twisted.internet.interfaces.IReactorTime} of the
            stage manager.
        @param answerLines: The most entries in one answer.
        @param pushTargets: The most original clients a new entry is sent
            to at once.
        @param limiter: The L{SourceLimiter} for what is sent; by default
            L{SOURCE_RATE} and L{SOURCE_BURST} for each address, and
            L{TOTAL_RATE} and L{TOTAL_BURST} for all.
        """
        self.clock = clock
        self.phonebook = None
        self.answerLines = answerLines
        self.pushTargets = pushTargets
        if limiter is None:
            limiter = SourceLimiter(SOURCE_RATE, SOURCE_BURST, TOTAL_RATE, TOTAL_BURST)
        self.limiter = limiter
        # Original clients' names, least recently registered first, each
        # with when it first registered from its address.
        self._originals = OrderedDict()
        self._logBudget = TokenBucket(LOG_RATE, LOG_BURST, clock.seconds())
        # A wanted name -> {native peer's name: whether it seeks now}.
        self._seekers = OrderedDict()
        self._stageManager = self._write = self._drops = self._stats = None

    def attach(self, stageManager):
        """
        Connect to the stage manager, an L{punchd.interfaces.IStageManager}.
        """
        self._stageManager = stageManager
        self.phonebook = stageManager.phonebook
        self._write = stageManager.write
        self._drops = stageManager.drops
        self._stats = stageManager.stats

    def describe(self) -> str:
        return (
            "Also answering the original test-clients' text registrations"
            f" (--seed-compat), with at most {self.answerLines} phonebook lines each"
        )

    def speaksFor(self, entry) -> bool:
        return entry.name in self._originals

    # Original clients

    def datagramReceived(self, datagram: bytes, address) -> bool:
        """
        Take a datagram that is not STUN: an original client's registration.
        """
        if not protocol.isText(datagram):
            return False
        self._registration(datagram, address)
        return True

    def _registration(self, datagram, address):
        source = formatAddress(address)
        try:
            name = protocol.parseRegistration(datagram)
        except InvalidMessage as e:
            self._drops.drop("invalid original registration", source, e.reason)
            return
        now = self.clock.seconds()
        existing = self.phonebook.lookup(name, now)
        if existing is not None and not self.speaksFor(existing):
            # A native peer holds the name; the original protocol, which
            # anyone can speak from any address, must not take it over.
            self._drops.drop("name held by a native peer", source, name)
            return
        # An original client cannot echo a cookie.  It counts as proven once
        # it has registered from the same address again, at least
        # PROOF_GAP later: see docs/security.rst for what that is worth.
        since = None
        if existing is not None and existing.address == address:
            since = self._originals.get(name)
        if since is None:
            since = now
        proven = now - since >= PROOF_GAP
        own = _ipv4(address)
        lines = ([(name, own)] if own is not None else []) + self._others(name, now)
        lines = lines[: self.answerLines]
        if not proven:
            # To an address not proven, no more bytes than it sent.
            lines = _fitting(lines, len(datagram))
        host = unmapped(address)[0]
        # What is sent is charged to its destination; a registration that
        # gets nothing only to the total, so that a spoofer cannot use up
        # the bucket of the address it spoofs.
        if not (
            self.limiter.take(host, len(lines), now)
            if lines
            else self.limiter.takeTotal(1, now)
        ):
            self._drops.drop("rate-limited original registration", source, name)
            return
        try:
            entry, previous = self.phonebook.register(name, address, (), (), now, proven=proven)
        except PhonebookFull:
            self._stats["phonebookFull"] += 1
            self._drops.drop("phonebook full", source, name)
            return
        except SourceQuotaReached as e:
            self._stats["quotaReached"] += 1
            self._drops.drop(f"names per {e.what} reached", source, name)
            return
        self._stats["original registrations"] += 1
        self._originals[name] = since
        self._originals.move_to_end(name)
        while len(self._originals) > self.phonebook.maxEntries:
            self._originals.popitem(last=False)
        count = len(lines)
        for slot, (lineName, lineAddress) in enumerate(lines):
            self._write(
                protocol.formatLine(
                    protocol.PhonebookLine(slot, count, lineName, lineAddress)
                ),
                address,
            )
        if not proven or (previous is not None and previous.proven):
            # Anyone can send a name from any address: a client is logged,
            # announced and introduced once it has proven it, and only then.
            return
        if self._logBudget.take(1, now):
            self.log.info(
                "{name} registered from {address} as an original test-client;"
                " answered with {count} phonebook line(s)",
                name=name,
                address=source,
                count=count,
            )
        if own is not None:
            self._announce(entry, own, now)
        for native in self._nativesSeeking(name, now, seekingOnly=True):
            self.introduce(native, entry)

    def _others(self, name, now):
        """
        The entries an original client named C{name} is shown besides its
        own: other original clients that proved their address, most recent
        first.  Native peers are never shown in an answer, even those that
        seek C{name}: anyone may register any name in text; a native peer
        that seeks it is introduced to it, and told to it, only once it has
        proven its address (L{introduce}).
        """
        others = []
        for entry in self._liveOriginals(now, exclude=name):
            if len(others) >= self.answerLines:
                break
            others.append((entry.name, _ipv4(entry.address)))
        return others

    def _liveOriginals(self, now, exclude):
        """
        Original clients still in the phonebook, most recent first, at most
        L{answerLines}; names that are no longer original clients are
        forgotten on the way.
        """
        found = []
        stale = []
        for other in reversed(self._originals):
            if len(found) >= self.answerLines:
                break
            entry = self.phonebook.lookup(other, now)
            if entry is None:
                stale.append(other)
            elif other != exclude and entry.proven and _ipv4(entry.address) is not None:
                found.append(entry)
        for other in stale:
            del self._originals[other]
        return found

    def _announce(self, entry, address, now):
        line = protocol.formatLine(
            protocol.PhonebookLine(0, 1, entry.name, address)
        )
        sent = 0
        for other in self._liveOriginals(now, exclude=entry.name)[: self.pushTargets]:
            if self._push(line, other.address, now):
                sent += 1
        if sent:
            self.log.debug(
                "Sent {name}'s entry to {sent} original client(s)",
                name=entry.name,
                sent=sent,
            )

    def _push(self, line, to, now):
        if not self.limiter.take(unmapped(to)[0], 1, now):
            self._drops.drop("rate-limited phonebook push", formatAddress(to))
            return False
        self._write(line, to)
        self._stats["original pushes"] += 1
        return True

    # Native peers

    def registered(self, entry, previous, seeking) -> None:
        """
        Note a native peer's registration: whom it wants, and whether it
        seeks an introduction now.

        @param entry: Its L{punchd.phonebook.Entry}.
        @param previous: The entry as it was, or L{None}.
        @param seeking: The contacts the registration sought an
            introduction to.
        """
        # A native peer that took an original client's name holds it now.
        self._originals.pop(entry.name, None)
        wants = entry.wants
        if previous is not None:
            for dropped in previous.wants:
                if dropped not in wants:
                    seekers = self._seekers.get(dropped)
                    if seekers is not None:
                        seekers.pop(entry.name, None)
        for wanted in wants:
            seekers = self._seekers.get(wanted)
            if seekers is None:
                seekers = self._seekers[wanted] = OrderedDict()
                while len(self._seekers) > self.phonebook.maxEntries:
                    self._seekers.popitem(last=False)
            else:
                self._seekers.move_to_end(wanted)
            seekers[entry.name] = wanted in seeking
            seekers.move_to_end(entry.name)
            while len(seekers) > SEEKERS_PER_NAME:
                seekers.popitem(last=False)

    def _nativesSeeking(self, name, now, seekingOnly=False):
        """
        The native peers that want C{name}, most recent first; those that
        are gone or want another peer now are forgotten on the way.
        """
        seekers = self._seekers.get(name)
        if not seekers:
            return []
        found = []
        for seeker, seeking in reversed(list(seekers.items())):
            entry = self.phonebook.lookup(seeker, now)
            if entry is None or self.speaksFor(entry) or name not in entry.wants:
                del seekers[seeker]
            elif seeking or not seekingOnly:
                found.append(entry)
        if not seekers:
            del self._seekers[name]
        return found

    def introduce(self, native, original) -> None:
        """
        Introduce the native peer C{native}, which seeks the original
        client C{original}, to it; and send C{native}'s entry to that
        client, so that the client sends to it at once.
        """
        self._introduceTo(native, original)
        self._announceNative(native, original)

    def _introduceTo(self, native, original):
        address = unmapped(original.address)
        self._stageManager.sendIntroduction(
            native,
            lambda txid, key: encodeOriginalIntroduction(txid, original.name, address, key),
        )
        self._stats["introductions"] += 1
        self.log.info(
            "Introduced {a} at {aAddress} to {b} at {bAddress}, an original"
            " test-client, which speaks only the original's unauthenticated text",
            a=native.name,
            aAddress=formatAddress(native.address),
            b=original.name,
            bAddress=formatAddress(original.address),
        )

    def _announceNative(self, native, original):
        address = _ipv4(native.address)
        if address is None or not protocol.fitsLine(native.name):
            self.log.warn(
                "{name} seeks {original}, an original test-client, which cannot"
                " be told of it: the original takes only IPv4 addresses, and"
                " names without commas",
                name=native.name,
                original=original.name,
            )
            return
        self._push(
            protocol.formatLine(protocol.PhonebookLine(0, 1, native.name, address)),
            original.address,
            self.clock.seconds(),
        )
