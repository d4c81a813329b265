"""
Tests for L{punchd.phonebook}.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.phonebook import Phonebook

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
        entry, previous, evicted = book.register("alice", A, (("10.0.0.2", 1),), ("bob",), 5)
        self.assertEqual(
            (entry.name, entry.address, entry.localAddresses, entry.wants, entry.lastSeen),
            ("alice", A, (("10.0.0.2", 1),), ("bob",), 5),
        )
        self.assertIsNone(previous)
        self.assertIsNone(evicted)
        self.assertIs(book.lookup("alice", 5), entry)

    def test_registerKnownUpdatesInPlace(self):
        """
        A known name is updated in place, and the entry as it was is returned.
        """
        book = Phonebook(10, 60)
        first, _, _ = book.register("alice", A, (), ("bob",), 0)
        entry, previous, _ = book.register("alice", B, (), ("carol",), 7)
        self.assertIs(entry, first)
        self.assertEqual((entry.address, entry.wants, entry.lastSeen), (B, ("carol",), 7))
        self.assertEqual((previous.address, previous.wants, previous.lastSeen), (A, ("bob",), 0))
        self.assertEqual(len(book), 1)

    def test_fullEvictsLeastRecentlySeen(self):
        """
        When full, a new name replaces the least recently seen entry, not the
        oldest registered.
        """
        book = Phonebook(2, 60)
        book.register("alice", A, (), (), 0)
        book.register("bob", B, (), (), 1)
        book.register("alice", A, (), (), 2)
        _, _, evicted = book.register("carol", A, (), (), 3)
        self.assertEqual(evicted.name, "bob")
        self.assertEqual([e.name for e in book], ["alice", "carol"])

    def test_lookupExpired(self):
        """
        An entry not refreshed within the TTL is not found, even before a
        sweep removes it.
        """
        book = Phonebook(10, 60)
        book.register("alice", A, (), (), 0)
        self.assertIsNotNone(book.lookup("alice", 59.9))
        self.assertIsNone(book.lookup("alice", 60))

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
        entry, _, _ = book.register("alice", ("2001:db8::7", 8080), local, (), 0)
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
            entry, _, _ = book.register("alice", address, (address,), (), 0)
            self.assertEqual((entry.address, entry.localAddresses), (address, (address,)))

    def test_wantsShared(self):
        """
        The name of a wanted peer that is registered is that peer's own name
        object.
        """
        book = Phonebook(10, 60)
        bob, _, _ = book.register("bob", B, (), (), 0)
        alice, _, _ = book.register("alice", A, (), ("".join(["b", "ob"]),), 0)
        self.assertIs(alice.wants[0], bob.name)

    def test_copyAndSamePlace(self):
        """
        A copy is the same place; a change of address, local address or
        wanted peer is not.
        """
        book = Phonebook(10, 60)
        entry, _, _ = book.register("alice", A, (("10.0.0.2", 1),), ("bob",), 0)
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
            _, previous, _ = book.register("alice", *change[:2], change[2], 1)
            self.assertFalse(previous.samePlace(entry))

    def test_secretKept(self):
        """
        An entry's secret reads back as set, and stays through a move, a
        copy and a change of local addresses; it is not part of the place.
        """
        book = Phonebook(10, 60)
        entry, _, _ = book.register("alice", A, (("10.0.0.2", 1),), (), 0)
        self.assertIsNone(entry.secret)
        entry.secret = b"s" * 16
        before = entry.copy()
        _, previous, _ = book.register("alice", B, (("10.0.0.3", 2),), (), 1)
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
            entry, _, _ = book.register(
                "alice", address, (("10.0.0.2", 1),), (), 0, True, b"s" * 16, b"p" * 16
            )
            self.assertEqual((entry.secret, entry.previousSecret), (b"s" * 16, b"p" * 16))
            _, previous, _ = book.register("alice", B, (("10.0.0.3", 2),), (), 1)
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
        entry, _, _ = book.register("alice", ("fe80::1%eth0", 1), (), (), 0)
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
        entry, _, _ = book.register("alice", A, (), (), 0, proven=True, secret=b"s" * 16)
        self.assertEqual((entry.proven, entry.secret), (True, b"s" * 16))
        entry, _, _ = book.register("alice", B, (), (), 1, proven=False)
        self.assertEqual((entry.proven, entry.secret, entry.address), (False, b"s" * 16, B))
        entry, _, _ = book.register("alice", A, (), (), 2, proven=True, secret=b"t" * 16)
        self.assertEqual((entry.secret, entry.address), (b"t" * 16, A))
