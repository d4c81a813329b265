"""
Tests for L{punchd.addresses}.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd.addresses import unusableReason


class UnusableReasonTests(SynchronousTestCase):
    """
    L{unusableReason} says why an address is no candidate.
    """

    def test_eachKind(self):
        """
        Every kind of unusable address gets its own reason; a plain one none.
        """
        own = {("203.0.113.1", 5000)}
        cases = [
            (("::1", 6000), "IPv6 address on an IPv4 socket"),
            (("::ffff:203.0.113.7", 6000), "IPv4-mapped address on an IPv4 socket"),
            (("0.0.0.0", 6000), "unspecified address"),
            (("255.255.255.255", 6000), "broadcast address"),
            (("224.0.0.1", 6000), "multicast address"),
            (("203.0.113.7", 0), "port 0"),
            (("203.0.113.1", 5000), "own address"),
            (("203.0.113.7", 6000), None),
        ]
        for address, reason in cases:
            self.assertEqual(unusableReason(address, False, own), reason, address)
        self.assertEqual(unusableReason(("ff02::1", 1), True), "multicast address")
        self.assertEqual(unusableReason(("::", 1), True), "unspecified address")
        self.assertEqual(unusableReason(("10.0.0.1", 1), True), "IPv4 address on an IPv6 socket")
