"""
Tests for L{punchd.phonebook}.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.phonebook import PhonebookFull, SourceQuotaReached, Phonebook

A = ("198.51.100.1", 40000)
B = ("203.0.113.1", 50000)


class PhonebookTests(SynchronousTestCase):
    """
    Tests for L{Phonebook}.
    """

    def test_registerNew(self):
        """
        A new name is added with everything the registration said.
        """
        book = Phonebook(10, 60)
        entry, previous = book.register("alice", A, (("10.0.0.2", 1),), ("bob",), 5)
        self.assertEqual(
            (entry.name, entry.address, entry.localAddresses, entry.wants, entry.lastSeen),
            ("alice", A, (("10.0.0.2", 1),), ("bob",), 5),
        )
        self.assertIsNone(previous)
        self.assertIs(book.lookup("alice", 5), entry)

    def test_registerKnownUpdatesInPlace(self):
        """
        A known name is updated in place, and the entry as it was is returned.
        """
        book = Phonebook(10, 60)
        first, _ = book.register("alice", A, (), ("bob",), 0)
        entry, previous = book.register("alice", B, (), ("carol",), 7)
        self.assertIs(entry, first)
        self.assertEqual((entry.address, entry.wants, entry.lastSeen), (B, ("carol",), 7))
        self.assertEqual((previous.address, previous.wants, previous.lastSeen), (A, ("bob",), 0))
        self.assertEqual(len(book), 1)

    def test_fullRefusesNewNames(self):
        """
        When full, a new name is refused and no entry is forgotten; known
        names still refresh; once an entry expires, there is room again.
        """
        book = Phonebook(2, 60)
        book.register("alice", A, (), (), 0)
        book.register("bob", B, (), (), 1)
        self.assertRaises(PhonebookFull, book.register, "carol", ("192.0.2.9", 1), (), (), 2)
        book.register("alice", A, (), (), 30)
        self.assertEqual([e.name for e in book], ["bob", "alice"])
        book.expire(61)
        book.register("carol", ("192.0.2.9", 1), (), (), 62)
        self.assertEqual([e.name for e in book], ["alice", "carol"])

    def test_namesPerAddress(self):
        """
        One source address and port holds at most C{namesPerAddress} names;
        another port of the same IP holds its own; a name that leaves, or
        moves away, makes room.
        """
        book = Phonebook(100, 60, namesPerAddress=2, namesPerIP=10)
        book.register("a", A, (), (), 0)
        book.register("b", A, (), (), 0)
        e = self.assertRaises(SourceQuotaReached, book.register, "c", A, (), (), 0)
        self.assertEqual((e.what, e.limit), ("address", 2))
        book.register("c", (A[0], A[1] + 1), (), (), 0)
        self.assertRaises(SourceQuotaReached, book.register, "c", A, (), (), 1)
        book.register("a", A, (), (), 1)
        book.remove("a")
        book.register("c", A, (), (), 2)
        self.assertEqual(book.held(A), (2, 2))
        book.register("b", B, (), (), 3)
        book.register("d", A, (), (), 3)
        self.assertEqual((book.held(A), book.held(B)), ((2, 2), (1, 1)))

    def test_namesPerIP(self):
        """
        One IP holds at most C{namesPerIP} names, whatever its ports; a name
        may still move between its ports; expiry makes room.
        """
        book = Phonebook(100, 60, namesPerAddress=2, namesPerIP=3)
        for i, port in enumerate((1, 2, 3)):
            book.register(f"n{i}", ("192.0.2.1", port), (), (), 0)
        e = self.assertRaises(
            SourceQuotaReached, book.register, "x", ("192.0.2.1", 4), (), (), 0
        )
        self.assertEqual((e.what, e.limit), ("IP", 3))
        book.register("n0", ("192.0.2.1", 4), (), (), 1)
        self.assertEqual(book.held(("192.0.2.1", 4)), (1, 3))
        book.expire(60.5)
        self.assertEqual(book.held(("192.0.2.1", 4)), (1, 1))
        book.register("x", ("192.0.2.1", 5), (), (), 61)

    def test_badQuotas(self):
        """
        Quotas below 1, or one for an IP below that for an address, are
        refused.
        """
        for perAddress, perIP in ((0, 5), (3, 2)):
            self.assertRaises(ValueError, Phonebook, 10, 60, perAddress, perIP)

    def test_lookupExpired(self):
        """
        An entry not refreshed within the TTL is not found, even before a
        sweep removes it.
        """
        book = Phonebook(10, 60)
        book.register("alice", A, (), (), 0)
        self.assertIsNotNone(book.lookup("alice", 59.9))
        self.assertIsNone(book.lookup("alice", 60))

    def test_refreshKeepsLiveEntry(self):
        """
        L{Phonebook.refresh} keeps a live entry from its own address
        another TTL, moved back among the entries to expire, and nothing
        else: not a name from another address, nor one past its TTL that
        no sweep has removed yet.
        """
        book = Phonebook(10, 60)
        book.register("alice", A, (), ("bob",), 0)
        book.register("bob", B, (), (), 10)
        self.assertTrue(book.refresh("alice", A, 50))
        kept = book.lookup("alice", 100)
        self.assertEqual((kept.lastSeen, kept.wants), (50, ("bob",)))
        self.assertEqual([e.name for e in book.expire(75)], ["bob"])
        self.assertFalse(book.refresh("alice", B, 60))
        self.assertFalse(book.refresh("carol", A, 60))
        self.assertFalse(book.refresh("alice", A, 110))
        self.assertIsNone(book.lookup("alice", 110))

    def test_expireRemovesOnlyExpired(self):
        """
        L{Phonebook.expire} removes the entries older than the TTL, oldest
        first, and keeps refreshed ones.
        """
        book = Phonebook(10, 60)
        book.register("alice", A, (), (), 0)
        book.register("bob", B, (), (), 10)
        book.register("carol", B, (), (), 20)
        book.register("alice", A, (), (), 30)
        self.assertEqual([e.name for e in book.expire(75)], ["bob"])
        self.assertEqual([e.name for e in book], ["carol", "alice"])
        self.assertEqual(book.expire(75), [])

    def test_remove(self):
        """
        A removed name is gone; removing an unknown one returns L{None}.
        """
        book = Phonebook(10, 60)
        book.register("alice", A, (), (), 0)
        self.assertEqual(book.remove("alice").name, "alice")
        self.assertIsNone(book.remove("alice"))
        self.assertEqual(len(book), 0)

    def test_badBounds(self):
        """
        A phonebook needs room for one entry and a positive TTL.
        """
        self.assertRaises(ValueError, Phonebook, 0, 60)
        self.assertRaises(ValueError, Phonebook, 10, 0)


class CompactEntryTests(SynchronousTestCase):
    """
    Entries keep addresses packed and share names; what they give back is
    what they were given.
    """

    def test_addressesComeBack(self):
        """
        IPv4 and IPv6 addresses, and local addresses of both, read back as
        given.
        """
        book = Phonebook(10, 60)
        local = (("10.0.0.2", 1), ("2001:db8::1", 65535), ("192.168.1.9", 0))
        entry, _ = book.register("alice", ("2001:db8::7", 8080), local, (), 0)
        self.assertEqual((entry.address, entry.localAddresses), (("2001:db8::7", 8080), local))
        entry.address = A
        self.assertEqual(entry.address, A)

    def test_oddAddressesKept(self):
        """
        An address that would not read back the same once packed (an IPv6
        scope, a form that is not canonical) is kept as it was given.
        """
        book = Phonebook(10, 60)
        for address in (("fe80::1%eth0", 1), ("2001:DB8::1", 2), ("0:0::1", 3)):
            entry, _ = book.register("alice", address, (address,), (), 0)
            self.assertEqual((entry.address, entry.localAddresses), (address, (address,)))

    def test_wantsShared(self):
        """
        The name of a wanted peer that is registered is that peer's own name
        object.
        """
        book = Phonebook(10, 60)
        bob, _ = book.register("bob", B, (), (), 0)
        alice, _ = book.register("alice", A, (), ("".join(["b", "ob"]),), 0)
        self.assertIs(alice.wants[0], bob.name)

    def test_copyAndSamePlace(self):
        """
        A copy is the same place; a change of address, local address or
        wanted peer is not.
        """
        book = Phonebook(10, 60)
        entry, _ = book.register("alice", A, (("10.0.0.2", 1),), ("bob",), 0)
        copy = entry.copy()
        self.assertEqual(
            (copy.name, copy.address, copy.localAddresses, copy.wants, copy.lastSeen),
            ("alice", A, (("10.0.0.2", 1),), ("bob",), 0),
        )
        self.assertTrue(copy.samePlace(entry))
        for change in (
            (B, (("10.0.0.2", 1),), ("bob",)),
            (A, (("10.0.0.2", 2),), ("bob",)),
            (A, (("10.0.0.2", 1),), ("carol",)),
            (A, (("10.0.0.2", 1),), ("bob", "carol")),
        ):
            _, previous = book.register("alice", *change[:2], change[2], 1)
            self.assertFalse(previous.samePlace(entry))

    def test_secretKept(self):
        """
        An entry's secret reads back as set, and stays through a move, a
        copy and a change of local addresses; it is not part of the place.
        """
        book = Phonebook(10, 60)
        entry, _ = book.register("alice", A, (("10.0.0.2", 1),), (), 0)
        self.assertIsNone(entry.secret)
        entry.secret = b"s" * 16
        before = entry.copy()
        _, previous = book.register("alice", B, (("10.0.0.3", 2),), (), 1)
        self.assertEqual(
            (entry.secret, entry.address, entry.localAddresses, previous.secret),
            (b"s" * 16, B, (("10.0.0.3", 2),), b"s" * 16),
        )
        entry.localAddresses = ()
        self.assertEqual((entry.secret, entry.localAddresses, entry.address), (b"s" * 16, (), B))
        other = before.copy()
        other.secret = b"t" * 16
        self.assertTrue(other.samePlace(before))

    def test_previousSecretKept(self):
        """
        The previous secret given with a secret reads back, stays through a
        move, a copy and a change of local addresses, and goes when a new
        secret comes without one; an address that does not pack keeps both
        too.
        """
        book = Phonebook(10, 60)
        for address in (A, ("fe80::1%eth0", 1)):
            entry, _ = book.register(
                "alice", address, (("10.0.0.2", 1),), (), 0, True, b"s" * 16, b"p" * 16
            )
            self.assertEqual((entry.secret, entry.previousSecret), (b"s" * 16, b"p" * 16))
            _, previous = book.register("alice", B, (("10.0.0.3", 2),), (), 1)
            entry.localAddresses = ()
            for e in (entry, previous, entry.copy()):
                self.assertEqual((e.secret, e.previousSecret), (b"s" * 16, b"p" * 16))
            self.assertEqual((entry.address, entry.localAddresses), (B, ()))
            book.register("alice", A, (), (), 2, True, b"t" * 16)
            self.assertEqual((entry.secret, entry.previousSecret, entry.address), (b"t" * 16, None, A))
            book.remove("alice")

    def test_secretWithOddAddress(self):
        """
        An entry whose address does not pack keeps its secret too.
        """
        book = Phonebook(10, 60)
        entry, _ = book.register("alice", ("fe80::1%eth0", 1), (), (), 0)
        entry.secret = b"s" * 16
        book.register("alice", ("fe80::1%eth0", 2), (A,), (), 1)
        self.assertEqual(
            (entry.secret, entry.address, entry.localAddresses),
            (b"s" * 16, ("fe80::1%eth0", 2), (A,)),
        )
        book.register("alice", A, (), (), 2)
        self.assertEqual((entry.secret, entry.address), (b"s" * 16, A))


class PhonebookInterfaceTests(SynchronousTestCase):
    def test_interface(self):
        """
        L{Phonebook} is an L{IPhonebook}.
        """
        from zope.interface.verify import verifyObject

        from punchd.interfaces import IPhonebook

        verifyObject(IPhonebook, Phonebook(10, 60))

    def test_provenAndSecret(self):
        """
        A registration sets whether the entry is proven; a secret given
        replaces the entry's, and none keeps it.
        """
        book = Phonebook(10, 60)
        entry, _ = book.register("alice", A, (), (), 0, proven=True, secret=b"s" * 16)
        self.assertEqual((entry.proven, entry.secret), (True, b"s" * 16))
        entry, _ = book.register("alice", B, (), (), 1, proven=False)
        self.assertEqual((entry.proven, entry.secret, entry.address), (False, b"s" * 16, B))
        entry, _ = book.register("alice", A, (), (), 2, proven=True, secret=b"t" * 16)
        self.assertEqual((entry.secret, entry.address), (b"t" * 16, A))
