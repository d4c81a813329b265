"""
Tests for L{punchd.cookies}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd.cookies import COOKIE_BYTES, Cookies

A = ("198.51.100.1", 5000)


class CookiesTests(SynchronousTestCase):
    """
    Tests for L{Cookies}.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.cookies = Cookies(self.clock, period=120)

    def test_validForItsAddress(self):
        """
        A cookie checks out for the address it was issued to.
        """
        cookie = self.cookies.issue(A)
        self.assertEqual(len(cookie), COOKIE_BYTES)
        self.assertTrue(self.cookies.check(cookie, A))

    def test_otherAddress(self):
        """
        A cookie issued to one address is worthless from another address or
        port.
        """
        cookie = self.cookies.issue(A)
        self.assertFalse(self.cookies.check(cookie, ("198.51.100.2", 5000)))
        self.assertFalse(self.cookies.check(cookie, ("198.51.100.1", 5001)))
        self.assertTrue(self.cookies.check(self.cookies.issue(("2001:db8::1", 5)), ("2001:db8::1", 5)))

    def test_expires(self):
        """
        A cookie lasts until the end of the period after the one it was
        issued in, and no longer.
        """
        cookie = self.cookies.issue(A)
        self.clock.advance(120)
        self.assertTrue(self.cookies.check(cookie, A))
        self.clock.advance(120)
        self.assertFalse(self.cookies.check(cookie, A))

    def test_forged(self):
        """
        A cookie of the wrong length, with a changed byte, or from another
        server's key, is refused.
        """
        cookie = self.cookies.issue(A)
        self.assertFalse(self.cookies.check(cookie[:-1], A))
        self.assertFalse(self.cookies.check(cookie[:-1] + bytes([cookie[-1] ^ 1]), A))
        self.assertFalse(self.cookies.check(b"\0" * COOKIE_BYTES, A))
        other = Cookies(self.clock, period=120)
        self.assertFalse(other.check(cookie, A))

    def test_validGivenBack(self):
        """
        A valid cookie of this period, handed to issue(), is what issue()
        would make anyway, and comes back as it is; one of the period
        before is replaced by a new one.
        """
        cookie = self.cookies.issue(A)
        self.clock.advance(60)
        self.assertIs(self.cookies.issue(A, cookie), cookie)
        self.assertEqual(self.cookies.issue(A, cookie), self.cookies.issue(A))
        self.clock.advance(120)
        self.assertEqual(self.cookies.issue(A, cookie), self.cookies.issue(A))
        self.assertNotEqual(self.cookies.issue(A, cookie), cookie)
