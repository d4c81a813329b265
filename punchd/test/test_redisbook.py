"""
Tests for L{punchd.redisbook} and L{punchd.redisstore}, against a real
C{redis-server} on a unix socket in a temporary directory.
"""

from twisted.internet import defer, reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from punchd.interfaces import IPhonebook
from punchd.phonebook import Phonebook, PhonebookFull, SourceQuotaReached
from punchd.redisbook import KEY_GRACE, RedisPhonebook, decodeEntry, encodeBody, secretField
from punchd.test.optional import notInstalled, require
from punchd.test.redisserver import startRedis

try:
    import txredisapi
except ImportError:
    txredisapi = None

A = ("198.51.100.1", 40000)
B = ("203.0.113.1", 50000)
C = ("203.0.113.2", 50000)
D = ("203.0.113.3", 50000)


def requireClient(testCase):
    require(testCase, txredisapi is not None, notInstalled("txredisapi", "redis"))


class EncodingTests(SynchronousTestCase):
    """
    An entry's Redis value reads back as what was written.
    """

    def test_roundTrip(self):
        """
        Name, secret, addresses, wanted names, time, proof and holder come
        back from the packed value.
        """
        local = (("10.0.0.2", 1), ("2001:db8::1", 65535))
        value = secretField(b"s" * 16) + encodeBody(True, 12.5, "m1", ("bob", "carol"), A, local)
        entry = decodeEntry("alice", value)
        self.assertEqual(
            (entry.name, entry.secret, entry.address, entry.localAddresses, entry.wants,
             entry.lastSeen, entry.proven, entry.holder),
            ("alice", b"s" * 16, A, local, ("bob", "carol"), 12.5, True, "m1"),
        )

    def test_natBehaviour(self):
        """
        Each of the nine NAT behaviours, and none, comes back from the
        flags.
        """
        from punchd.messages import readBehaviour

        pairs = [readBehaviour(bytes((m, f)))[0] for m in range(3) for f in range(3)]
        for nat in [None, *pairs]:
            for local in ((), (("2001:db8::1", 1),)):
                value = secretField(b"s" * 16) + encodeBody(True, 1.0, "m1", (), A, local, nat)
                self.assertEqual(decodeEntry("alice", value).nat, nat)

    def test_previousSecret(self):
        """
        The previous secret reads back with the secret, with packed and
        unpacked addresses alike.
        """
        for address in (A, ("fe80::1%eth0", 1)):
            value = secretField(b"s" * 16, b"p" * 16) + encodeBody(True, 1.0, "m1", (), address, ())
            entry = decodeEntry("alice", value)
            self.assertEqual(
                (entry.secret, entry.previousSecret, entry.address), (b"s" * 16, b"p" * 16, address)
            )

    def test_oddAddressesAndNoSecret(self):
        """
        Addresses that do not pack, and an entry with no secret, read back
        as given.
        """
        odd = ("fe80::1%eth0", 1)
        value = secretField(None) + encodeBody(False, 3.0, "m2", ("bob",), odd, (odd,))
        entry = decodeEntry("alice", value)
        self.assertEqual(
            (entry.secret, entry.address, entry.localAddresses, entry.wants, entry.proven),
            (None, odd, (odd,), ("bob",), False),
        )

    def test_compact(self):
        """
        A typical entry (a secret and the previous one, one local address,
        one wanted name of 12 characters) takes under 80 bytes.
        """
        value = secretField(b"s" * 16, b"p" * 16) + encodeBody(
            True, 1.0, "0123abcd", ("peer-0000001",), A, (("192.168.1.2", 40000),)
        )
        self.assertLess(len(value), 80)


class CommandEncodingTests(SynchronousTestCase):
    """
    The store's protocol encodes commands as txredisapi's own does.
    """

    def test_sameBytes(self):
        """
        Bytes, text (non-ASCII too), integers, floats and empty values are
        encoded byte for byte as txredisapi's C{RedisProtocol} encodes
        them.
        """
        requireClient(self)
        from punchd.redisstore import commandProtocol

        args = ("EVALSHA", b"\x00\xffraw", "pe\u00e9r", 42, -1, 2.5, "", b"", "x" * 300)
        theirs = txredisapi.RedisProtocol(charset=None)._build_command(*args)
        ours = commandProtocol(txredisapi)(charset=None)._build_command(*args)
        self.assertEqual(ours, theirs)

    def test_sameError(self):
        """
        Text that does not encode (a lone surrogate) is refused with
        txredisapi's own error.
        """
        requireClient(self)
        from punchd.redisstore import commandProtocol

        protocol = commandProtocol(txredisapi)(charset=None)
        self.assertRaises(txredisapi.InvalidData, protocol._build_command, "GET", "a\udc80")


class RedisTestCase(TestCase):
    """
    A real redis-server, and a started L{punchd.redisstore.RedisStore} on
    it.
    """

    unix = True

    def setUp(self):
        requireClient(self)
        from punchd.redisstore import RedisStore, parseURL

        self.redis = startRedis(self, unix=self.unix)
        self.store = RedisStore(parseURL(self.redis.url), reactor)
        self.book = RedisPhonebook(self.store, 3, 60.0, "m1", prefix="t:")
        self.store.startService()
        self.addCleanup(self.store.stopService)
        return self.store.whenAvailable()


class RedisPhonebookTests(RedisTestCase):
    """
    L{RedisPhonebook} keeps the in-memory phonebook's promises.
    """

    def test_interface(self):
        """
        L{RedisPhonebook} is an L{IPhonebook}.
        """
        verifyObject(IPhonebook, self.book)

    @defer.inlineCallbacks
    def test_registerNew(self):
        """
        A new name is recorded with everything the registration said, and
        found.
        """
        entry, previous = yield self.book.register(
            "alice", A, (("10.0.0.2", 1),), ("bob",), 5.0, True, b"s" * 16
        )
        self.assertEqual(
            (entry.name, entry.address, entry.localAddresses, entry.wants, entry.lastSeen,
             entry.proven, entry.secret, entry.holder),
            ("alice", A, (("10.0.0.2", 1),), ("bob",), 5.0, True, b"s" * 16, "m1"),
        )
        self.assertEqual((previous, len(self.book)), (None, 1))
        found = yield self.book.lookup("alice", 6.0)
        self.assertEqual((found.address, found.secret, found.wants), (A, b"s" * 16, ("bob",)))

    @defer.inlineCallbacks
    def test_registerKnownKeepsSecret(self):
        """
        A known name is updated; the entry as it was comes back, and with
        no secret given the entry keeps its own.
        """
        yield self.book.register("alice", A, (), ("bob",), 0.0, True, b"s" * 16)
        entry, previous = yield self.book.register("alice", B, (), ("carol",), 7.0, True)
        self.assertEqual(
            (entry.address, entry.wants, entry.lastSeen, entry.secret), (B, ("carol",), 7.0, b"s" * 16)
        )
        self.assertEqual((previous.address, previous.wants, previous.lastSeen), (A, ("bob",), 0.0))
        self.assertTrue(previous.samePlace(previous.copy()))
        entry, _ = yield self.book.register("alice", B, (), ("carol",), 8.0, True, b"t" * 16)
        self.assertEqual(entry.secret, b"t" * 16)
        self.assertEqual(len(self.book), 1)

    @defer.inlineCallbacks
    def test_previousSecretKept(self):
        """
        A new secret comes with the one it replaces; a registration with no
        secret keeps both.
        """
        yield self.book.register("alice", A, (), (), 0.0, True, b"s" * 16)
        entry, _ = yield self.book.register("alice", A, (), (), 1.0, True, b"t" * 16, b"s" * 16)
        self.assertEqual((entry.secret, entry.previousSecret), (b"t" * 16, b"s" * 16))
        entry, previous = yield self.book.register("alice", B, (), (), 2.0, True)
        self.assertEqual((entry.secret, entry.previousSecret, entry.address), (b"t" * 16, b"s" * 16, B))
        self.assertEqual(previous.previousSecret, b"s" * 16)
        found = yield self.book.lookup("alice", 3.0)
        self.assertEqual((found.secret, found.previousSecret), (b"t" * 16, b"s" * 16))
        entry, _ = yield self.book.register("alice", B, (), (), 4.0, True, b"u" * 16)
        self.assertEqual((entry.secret, entry.previousSecret), (b"u" * 16, None))

    @defer.inlineCallbacks
    def test_fullRefusesNewNames(self):
        """
        When full, a new name is refused with PhonebookFull and no entry is
        forgotten; known names still refresh; once an entry expires, there
        is room again.
        """
        yield self.book.register("alice", A, (), (), 0.0)
        yield self.book.register("bob", B, (), (), 1.0)
        yield self.book.register("carol", C, (), (), 2.0)
        yield self.assertFailure(self.book.register("dave", D, (), (), 3.0), PhonebookFull)
        yield self.book.register("alice", A, (), (), 30.0)
        for name in ("alice", "bob", "carol"):
            self.assertIsNotNone((yield self.book.lookup(name, 30.0)))
        self.assertIsNone((yield self.book.lookup("dave", 30.0)))
        self.assertEqual(len(self.book), 3)
        self.assertEqual((yield self.book.held(D)), (0, 0))
        expired = yield self.book.expire(61.0)
        self.assertEqual([e.name for e in expired], ["bob"])
        entry, previous = yield self.book.register("dave", D, (), (), 62.0)
        self.assertEqual((entry.name, previous, len(self.book)), ("dave", None, 3))

    @defer.inlineCallbacks
    def test_namesPerAddress(self):
        """
        One source address and port holds at most C{namesPerAddress} names;
        another port of the same IP holds its own; a name that leaves, or
        moves away, makes room.
        """
        book = RedisPhonebook(self.store, 100, 60.0, "m1", prefix="q:", namesPerAddress=2,
                              namesPerIP=10)
        yield book.register("a", A, (), (), 0.0)
        yield book.register("b", A, (), (), 0.0)
        e = yield self.assertFailure(book.register("c", A, (), (), 0.0), SourceQuotaReached)
        self.assertEqual((e.what, e.limit), ("address", 2))
        yield book.register("c", (A[0], A[1] + 1), (), (), 0.0)
        yield self.assertFailure(book.register("c", A, (), (), 1.0), SourceQuotaReached)
        self.assertEqual((yield book.lookup("c", 1.0)).address, (A[0], A[1] + 1))
        yield book.register("a", A, (), (), 1.0)
        yield book.remove("a")
        yield book.register("c", A, (), (), 2.0)
        self.assertEqual((yield book.held(A)), (2, 2))
        yield book.register("b", B, (), (), 3.0)
        yield book.register("d", A, (), (), 3.0)
        self.assertEqual(((yield book.held(A)), (yield book.held(B))), ((2, 2), (1, 1)))

    @defer.inlineCallbacks
    def test_namesPerIP(self):
        """
        One IP holds at most C{namesPerIP} names, whatever its ports; a name
        may still move between its ports; expiry makes room.
        """
        book = RedisPhonebook(self.store, 100, 60.0, "m1", prefix="q:", namesPerAddress=2,
                              namesPerIP=3)
        for i, port in enumerate((1, 2, 3)):
            yield book.register(f"n{i}", ("192.0.2.1", port), (), (), 0.0)
        e = yield self.assertFailure(
            book.register("x", ("192.0.2.1", 4), (), (), 0.0), SourceQuotaReached
        )
        self.assertEqual((e.what, e.limit), ("IP", 3))
        yield book.register("n0", ("192.0.2.1", 4), (), (), 1.0)
        self.assertEqual((yield book.held(("192.0.2.1", 4))), (1, 3))
        yield book.expire(60.5)
        self.assertEqual((yield book.held(("192.0.2.1", 4))), (1, 1))
        yield book.register("x", ("192.0.2.1", 5), (), (), 61.0)

    @defer.inlineCallbacks
    def test_countsLeaveNothing(self):
        """
        Once every name is removed or expired, no count is left in Redis.
        """
        odd = ("fe80::1%eth0", 7)
        yield self.book.register("alice", A, (), (), 0.0)
        yield self.book.register("bob", odd, (), (), 1.0)
        yield self.book.register("carol", ("2001:db8::1", 9), (), (), 2.0)
        yield self.book.register("bob", B, (), (), 3.0)
        self.assertEqual((yield self.book.held(odd)), (0, 0))
        yield self.book.register("bob", odd, (), (), 4.0)
        self.assertEqual((yield self.book.held(odd)), (1, 1))
        yield self.book.remove("alice")
        yield self.book.expire(100.0)
        self.assertEqual(self.redis.command("KEYS", "t:*").strip(), b"*0")

    @defer.inlineCallbacks
    def test_quotaShared(self):
        """
        Two stage managers registering names from one address at once give
        it no more than its quota between them: the check and the count are
        one script.
        """
        books = [
            RedisPhonebook(self.store, 100, 60.0, holder, prefix="q:", namesPerAddress=3,
                           namesPerIP=10)
            for holder in ("m1", "m2")
        ]
        results = yield defer.DeferredList(
            [books[i % 2].register(f"n{i}", A, (), (), 0.0) for i in range(10)],
            consumeErrors=True,
        )
        self.assertEqual(sum(ok for ok, _ in results), 3)
        self.assertEqual((yield books[1].held(A)), (3, 3))

    def test_badQuotas(self):
        """
        Quotas below 1, or one for an IP below that for an address, are
        refused.
        """
        for perAddress, perIP in ((0, 10), (3, 2)):
            self.assertRaises(
                ValueError, RedisPhonebook, self.store, 10, 60.0, "m1",
                namesPerAddress=perAddress, namesPerIP=perIP,
            )

    @defer.inlineCallbacks
    def test_lookupExpired(self):
        """
        An entry past its TTL is not found, even before a sweep removes it.
        """
        yield self.book.register("alice", A, (), (), 0.0)
        self.assertIsNotNone((yield self.book.lookup("alice", 59.9)))
        self.assertIsNone((yield self.book.lookup("alice", 60.0)))

    @defer.inlineCallbacks
    def test_expireRemovesOnlyExpired(self):
        """
        A sweep removes the entries older than the TTL, oldest first, and
        keeps refreshed ones.
        """
        yield self.book.register("alice", A, (), (), 0.0)
        yield self.book.register("bob", B, (), (), 10.0)
        yield self.book.register("carol", B, (), (), 20.0)
        yield self.book.register("alice", A, (), (), 30.0)
        expired = yield self.book.expire(75.0)
        self.assertEqual([e.name for e in expired], ["bob"])
        self.assertEqual((yield self.book.expire(75.0)), [])
        self.assertEqual(len(self.book), 2)

    @defer.inlineCallbacks
    def test_keyTTL(self):
        """
        Each entry's key expires in Redis by itself a few seconds after the
        phonebook's TTL, with or without a stage manager to sweep.
        """
        yield self.book.register("alice", A, (), (), 0.0)
        ttl = int(self.redis.command("PTTL", "t:e:alice")[1:-2])
        self.assertTrue(55000 < ttl <= (60 + KEY_GRACE) * 1000, ttl)

    @defer.inlineCallbacks
    def test_remove(self):
        """
        A removed name is gone; removing an unknown one gives L{None}.
        """
        yield self.book.register("alice", A, (), (), 0.0)
        self.assertEqual((yield self.book.remove("alice")).name, "alice")
        self.assertIsNone((yield self.book.remove("alice")))
        self.assertEqual(len(self.book), 0)

    @defer.inlineCallbacks
    def test_shared(self):
        """
        A second phonebook on the same Redis sees the first's entries, and
        which stage manager holds each.
        """
        other = RedisPhonebook(self.store, 3, 60.0, "m2", prefix="t:")
        yield self.book.register("alice", A, (), ("bob",), 0.0, True, b"s" * 16)
        yield other.register("bob", B, (), ("alice",), 1.0, True, b"t" * 16)
        alice = yield other.lookup("alice", 2.0)
        bob = yield self.book.lookup("bob", 2.0)
        self.assertEqual((alice.holder, bob.holder), ("m1", "m2"))
        _, previous = yield other.register("alice", B, (), ("bob",), 3.0, True)
        self.assertEqual((previous.holder, (yield self.book.lookup("alice", 3.0)).holder), ("m1", "m2"))


class RedisRefreshTests(RedisTestCase):
    """
    L{RedisPhonebook.refresh} keeps an entry as the in-memory phonebook's
    does, and only for the stage manager that holds it.
    """

    @defer.inlineCallbacks
    def test_keepsEntry(self):
        """
        A refresh from the entry's address keeps it another TTL, with its
        secrets, addresses and wanted names as they were, its key's TTL
        renewed, and its place among the entries to expire moved back.
        """
        local = (("10.0.0.2", 1),)
        yield self.book.register("alice", A, local, ("bob",), 0.0, True, b"s" * 16, b"p" * 16)
        yield self.book.register("bob", B, (), (), 10.0)
        self.redis.command("PEXPIRE", "t:e:alice", "1000")
        self.assertTrue((yield self.book.refresh("alice", A, 50.0)))
        entry = yield self.book.lookup("alice", 100.0)
        self.assertEqual(
            (entry.address, entry.localAddresses, entry.wants, entry.secret,
             entry.previousSecret, entry.lastSeen, entry.proven, entry.holder),
            (A, local, ("bob",), b"s" * 16, b"p" * 16, 50.0, True, "m1"),
        )
        ttl = int(self.redis.command("PTTL", "t:e:alice")[1:-2])
        self.assertTrue(55000 < ttl <= (60 + KEY_GRACE) * 1000, ttl)
        self.assertEqual([e.name for e in (yield self.book.expire(75.0))], ["bob"])

    @defer.inlineCallbacks
    def test_renewsSourceCounts(self):
        """
        A refresh renews the TTL of the hash counting its source's names,
        so that the count lives as long as the entry it counts.
        """
        from punchd.redisbook import sourceKey

        yield self.book.register("alice", A, (), (), 0.0)
        key = sourceKey("t:", A)[0].decode()
        self.redis.command("PEXPIRE", key, "1000")
        yield self.book.refresh("alice", A, 1.0)
        ttl = int(self.redis.command("PTTL", key)[1:-2])
        self.assertTrue(55000 < ttl, ttl)
        self.assertEqual((yield self.book.held(A)), (1, 1))

    @defer.inlineCallbacks
    def test_refused(self):
        """
        A refresh keeps nothing for a name not registered, registered from
        another address, past its TTL, or with an address that does not
        pack.
        """
        odd = ("fe80::1%eth0", 1)
        yield self.book.register("alice", A, (), (), 0.0)
        yield self.book.register("bob", odd, (), (), 0.0)
        self.assertFalse((yield self.book.refresh("carol", A, 1.0)))
        self.assertFalse((yield self.book.refresh("alice", B, 1.0)))
        self.assertFalse((yield self.book.refresh("alice", A, 60.0)))
        self.assertFalse((yield self.book.refresh("bob", ("fe80::1%eth1", 1), 1.0)))
        self.assertTrue((yield self.book.refresh("bob", odd, 1.0)))
        self.assertEqual((yield self.book.lookup("alice", 59.0)).lastSeen, 0.0)

    @defer.inlineCallbacks
    def test_heldElsewhere(self):
        """
        Once a peer has moved to another stage manager, whatever address it
        registered from there, a refresh through the one it left keeps
        nothing; through the new holder it keeps the entry.
        """
        other = RedisPhonebook(self.store, 3, 60.0, "m2", prefix="t:")
        yield self.book.register("alice", A, (), (), 0.0, True, b"s" * 16)
        yield other.register("alice", A, (), (), 1.0, True)
        self.assertFalse((yield self.book.refresh("alice", A, 2.0)))
        self.assertTrue((yield other.refresh("alice", A, 2.0)))
        self.assertEqual((yield self.book.lookup("alice", 3.0)).lastSeen, 2.0)


class UnavailableTests(RedisTestCase):
    """
    Without Redis, the phonebook refuses plainly and the store says so.
    """

    @defer.inlineCallbacks
    def test_refusedWhileDown(self):
        """
        While Redis is down, registrations and lookups fail with a
        StoreUnavailable, code 500, and a sweep removes nothing; once Redis
        is back, the phonebook works again by itself.
        """
        from punchd.redisstore import SERVER_ERROR, StoreUnavailable

        gone = defer.Deferred()
        self.store.observe(lambda available: available or gone.called or gone.callback(None))
        self.redis.kill()
        yield gone
        self.assertFalse(self.store.available)
        for call in (
            lambda: self.book.register("alice", A, (), (), 0.0),
            lambda: self.book.lookup("alice", 0.0),
        ):
            failure = yield self.assertFailure(call(), StoreUnavailable)
            self.assertEqual(failure.code, SERVER_ERROR)
            self.assertIn(self.redis.url, failure.reason)
        self.assertEqual((yield self.book.expire(0.0)), [])
        self.assertEqual(self.store.outages, 1)
        self.redis.start()
        yield self.store.whenAvailable()
        entry, _ = yield self.book.register("alice", A, (), (), 0.0)
        self.assertEqual(entry.address, A)


class AnsweredErrorTests(RedisTestCase):
    """
    An error Redis answers with is a refusal too, said once in the log.
    """

    @defer.inlineCallbacks
    def test_outOfMemory(self):
        """
        With Redis out of memory, a registration fails with
        StoreUnavailable and the log names Redis's error once.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        from punchd.redisstore import StoreUnavailable

        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.redis.command("CONFIG", "SET", "maxmemory", "1")
        self.redis.command("CONFIG", "SET", "maxmemory-policy", "noeviction")
        for _ in range(2):
            yield self.assertFailure(self.book.register("alice", A, (), (), 0.0), StoreUnavailable)
        said = [e for e in events if e["log_format"].startswith("Redis at {url} refused")]
        self.assertEqual(len(said), 1)
        self.assertIn("OOM", said[0]["error"])
        self.redis.command("CONFIG", "SET", "maxmemory", "0")
        entry, _ = yield self.book.register("alice", A, (), (), 0.0)
        self.assertEqual(entry.address, A)


class URLTests(SynchronousTestCase):
    """
    C{--redis} URLs.
    """

    def test_good(self):
        """
        TCP and unix socket URLs, with defaults for the port and database.
        """
        from punchd.redisstore import parseURL

        for url, fields in (
            ("redis://127.0.0.1:6380/2", ("127.0.0.1", 6380, None, 2)),
            ("redis://localhost", ("localhost", 6379, None, 0)),
            ("redis://[::1]:7000/", ("::1", 7000, None, 0)),
            ("unix:///run/redis/redis.sock", (None, 6379, "/run/redis/redis.sock", 0)),
            ("unix:///tmp/r.sock?db=3", (None, 6379, "/tmp/r.sock", 3)),
        ):
            address = parseURL(url)
            self.assertEqual((address.host, address.port, address.path, address.db), fields)

    def test_bad(self):
        """
        A URL that is not one of the two forms is refused, saying why.
        """
        from punchd.redisstore import parseURL

        for url, says in (
            ("http://x/", "not a Redis URL"),
            ("redis://:6379/0", "names no host"),
            ("redis://h:99999/0", "not a Redis URL"),
            ("redis://h/x", "must be a number"),
            ("unix://relative/path", "unix:///ABSOLUTE/PATH"),
            ("unix:///tmp/r.sock?x=1", "only ?db=N"),
            ("localhost:6379", "not a Redis URL"),
        ):
            e = self.assertRaises(ValueError, parseURL, url)
            self.assertIn(says, str(e))


class SharedKeysTests(RedisTestCase):
    """
    L{punchd.redisstore.shareKeys}.
    """

    @defer.inlineCallbacks
    def test_sameKeys(self):
        """
        Two stage managers on one Redis get the same key for each purpose,
        and different keys for different purposes.
        """
        from punchd.redisstore import RedisStore, parseURL, shareKeys

        keys = [{}, {}]
        stores = []
        for got in keys:
            store = RedisStore(parseURL(self.redis.url), reactor)
            shareKeys(
                store,
                {purpose: (lambda key, purpose=purpose, got=got: got.__setitem__(purpose, key))
                 for purpose in (b"cookies", b"names")},
            )
            store.startService()
            self.addCleanup(store.stopService)
            stores.append(store)
        for store in stores:
            yield store.whenAvailable()
        self.assertEqual(keys[0], keys[1])
        self.assertNotEqual(keys[0][b"cookies"], keys[0][b"names"])
        self.assertEqual(len(keys[0][b"cookies"]), 32)


def _summary(entry):
    if entry is None:
        return None
    return (
        entry.name, entry.address, entry.localAddresses, entry.wants, entry.lastSeen,
        entry.proven, entry.secret, entry.previousSecret,
    )


class EquivalenceTests(RedisTestCase):
    """
    The shared phonebook gives the same results as the in-memory one for
    the same calls.
    """

    HOSTS = ("198.51.100.1", "198.51.100.2", "2001:db8::5", "fe80::1%eth0")
    NAMES = tuple(f"peer-{i}" for i in range(9))

    def _call(self, book, call):
        """
        Make the call C{call} on C{book}, and say what came of it.
        """
        what, args = call[0], call[1:]
        if what == "register":
            d = defer.maybeDeferred(book.register, *args)
            d.addCallback(lambda r: ("ok", _summary(r[0]), _summary(r[1])))
            d.addErrback(lambda f: f.trap(PhonebookFull) and ("full",))
            d.addErrback(
                lambda f: f.trap(SourceQuotaReached) and ("quota", f.value.what, f.value.limit)
            )
        elif what == "lookup":
            d = defer.maybeDeferred(book.lookup, *args).addCallback(_summary)
        elif what == "refresh":
            d = defer.maybeDeferred(book.refresh, *args)
        elif what == "remove":
            d = defer.maybeDeferred(book.remove, *args).addCallback(_summary)
        elif what == "expire":
            d = defer.maybeDeferred(book.expire, *args)
            # Oldest first; entries last seen at the same time come in the
            # order they registered in memory, by name in Redis's sorted set.
            d.addCallback(
                lambda expired: sorted(
                    (_summary(e) for e in expired), key=lambda e: (e[4], e[0])
                )
            )
        else:
            d = defer.maybeDeferred(book.held, *args)
        return d.addCallback(lambda result: (result, len(book)))

    def _calls(self, random, count):
        """
        C{count} calls drawn from C{random}: mostly registrations, from a
        few sources, with new secrets now and then.
        """
        now = 0.0
        addresses = [(host, port) for host in self.HOSTS for port in (1000, 1001, 1002)]
        # Where each name last registered from.
        where = {}
        for _ in range(count):
            now += random.choice((0.0, 0.5, 1.0, 7.0, 20.0))
            name = random.choice(self.NAMES)
            roll = random.random()
            if roll < 0.6:
                secret = previous = None
                if random.random() < 0.5:
                    secret = random.randbytes(16)
                    if random.random() < 0.5:
                        previous = random.randbytes(16)
                wants = tuple(random.sample(self.NAMES, random.choice((0, 1, 1, 2, 3))))
                local = tuple(random.sample(addresses, random.choice((0, 1, 2))))
                where[name] = random.choice(addresses)
                yield (
                    "register", name, where[name], local, wants, now,
                    random.random() < 0.7, secret, previous,
                )
            elif roll < 0.67:
                # Mostly from where the name last registered from.
                address = where.get(name)
                if address is None or random.random() < 0.3:
                    address = random.choice(addresses)
                yield ("refresh", name, address, now)
            elif roll < 0.75:
                yield ("lookup", name, now)
            elif roll < 0.85:
                yield ("remove", name)
            elif roll < 0.95:
                yield ("expire", now)
            else:
                yield ("held", random.choice(addresses))

    @defer.inlineCallbacks
    def test_sameResults(self):
        """
        Registrations (new names, moves, refreshes, new secrets, several
        contacts), compact refreshes kept and refused, lookups, removals,
        sweeps and source counts, with a phonebook that fills and quotas
        that are reached, give the same
        entries, the same refusals and the same counts in memory and in
        Redis (entries a sweep removes that were last seen at the same time
        may come in another order).
        """
        import random

        for seed in range(12):
            memory = Phonebook(6, 60.0, namesPerAddress=2, namesPerIP=3)
            shared = RedisPhonebook(
                self.store, 6, 60.0, "m1", prefix=f"eq{seed}:", namesPerAddress=2, namesPerIP=3
            )
            outcomes = set()
            for step, call in enumerate(self._calls(random.Random(seed), 300)):
                expected = yield self._call(memory, call)
                got = yield self._call(shared, call)
                self.assertEqual(got, expected, f"seed {seed}, call {step}: {call}")
                if call[0] == "register":
                    outcomes.add(expected[0][0])
                elif call[0] == "refresh":
                    outcomes.add(("refresh", expected[0]))
                else:
                    outcomes.add(call[0])
            # Every kind of outcome was met.
            self.assertEqual(
                outcomes,
                {
                    "ok", "full", "quota", ("refresh", True), ("refresh", False), "lookup",
                    "remove", "expire", "held",
                },
            )
            for host in self.HOSTS:
                for port in (1000, 1001, 1002):
                    self.assertEqual(
                        (yield shared.held((host, port))), memory.held((host, port))
                    )


class RedisSecondFamilyTests(RedisTestCase):
    """
    The address of the other family in the shared phonebook, as in the
    in-memory one.
    """

    @defer.inlineCallbacks
    def test_alsoAt(self):
        """
        C{alsoAt} records the address beside a live entry, for a TTL: the
        entry looked up, and registered again, carries it; it is refused
        for a name not there, and gone with the entry.
        """
        other = ("2001:db8:a::2", 5000)
        self.assertFalse((yield self.book.alsoAt("alice", other, 1.0)))
        memory = Phonebook(3, 60.0)
        for book in (memory, self.book):
            yield book.register("alice", A, (), ("bob",), 1.0, True, b"s" * 16)
            self.assertTrue((yield book.alsoAt("alice", other, 2.0)))
            found = yield book.lookup("alice", 3.0)
            self.assertEqual(
                (found.secondAddress(3.0), found.secondAddress(62.0)), (other, None), book
            )
            entry, _ = yield book.register("alice", A, (), ("bob",), 4.0, True)
            self.assertEqual(entry.secondAddress(5.0), other, book)
            yield book.remove("alice")
            self.assertFalse((yield book.alsoAt("alice", other, 6.0)))
        self.assertEqual((yield self.store.call("EXISTS", "t:o:alice")), 0)
