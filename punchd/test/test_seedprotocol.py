"""
Tests for L{punchd.compat.protocol}, the original programs' text protocol.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.compat import protocol as seedprotocol
from punchd.messages import InvalidMessage
from punchd.compat.protocol import MalformedLine, PhonebookLine
from punchd.test.optional import given, st


class RegistrationTests(SynchronousTestCase):
    """
    Reading and writing an original client's registration.
    """

    def test_bareName(self):
        """
        A registration is the bare name.
        """
        self.assertEqual(seedprotocol.encodeRegistration("alice"), b"alice")
        self.assertEqual(seedprotocol.parseRegistration(b"alice"), "alice")

    def test_nameEndsAtCRLFOrSpace(self):
        """
        The name is the text up to the first CR, LF or space, as the
        original server reads it.
        """
        for datagram in (b"alice\n", b"alice\r\n", b"alice bob", b"alice\rx", b"alice\nbob carol"):
            self.assertEqual(seedprotocol.parseRegistration(datagram), "alice", datagram)

    def test_onlyFirst1023Bytes(self):
        """
        Like the original, only the first 1023 bytes count: a name that
        runs past them is cut there, and then it is too long.
        """
        e = self.assertRaises(
            InvalidMessage, seedprotocol.parseRegistration, b"a" * 2000
        )
        self.assertEqual(e.reason, "name is 1023 bytes, the limit is 64")

    def test_emptyNameRefused(self):
        """
        An empty datagram, or one that starts with a line end, is refused;
        the original crashes on it.
        """
        for datagram in (b"", b"\n", b" alice"):
            e = self.assertRaises(InvalidMessage, seedprotocol.parseRegistration, datagram)
            self.assertEqual(e.reason, "empty name")

    def test_badNamesRefused(self):
        """
        Names that break punchd's rules, or hold a comma that would break the
        phonebook lines, are refused.
        """
        cases = [
            (b"a\tb", "name 'a\\tb' has white space or control characters"),
            (b"\xff", "name is not UTF-8"),
            (b"a,b", "name 'a,b' has a comma"),
        ]
        for datagram, reason in cases:
            e = self.assertRaises(InvalidMessage, seedprotocol.parseRegistration, datagram)
            self.assertEqual(e.reason, reason)

    def test_textIsNotStun(self):
        """
        Registrations and lines are told apart from STUN messages.
        """
        self.assertTrue(seedprotocol.isText(b"alice"))
        self.assertTrue(seedprotocol.isText(b"0,1,alice,192.0.2.1,5000\n"))
        self.assertTrue(seedprotocol.isText(b""))
        registration = messages.encodeRegistration(
            stun.newTransactionID(), messages.Registration("alice")
        )
        self.assertFalse(seedprotocol.isText(registration))

    @given(st.text(min_size=1, max_size=64).filter(lambda t: len(t.encode()) <= 64))
    def test_everyValidNameIsText(self, name):
        """
        Every name punchd accepts is, as a registration, text, never STUN.
        """
        try:
            messages.validateName(name.encode("utf-8"))
        except InvalidMessage:
            return
        self.assertTrue(seedprotocol.isText(seedprotocol.encodeRegistration(name)))


class PhonebookLineTests(SynchronousTestCase):
    """
    Reading and writing the original server's phonebook lines.
    """

    def test_format(self):
        """
        A line is C{SLOT,COUNT,NAME,IPV4,PORT} and a newline.
        """
        self.assertEqual(
            seedprotocol.formatLine(PhonebookLine(1, 2, "bob", ("203.0.113.7", 40021))),
            b"1,2,bob,203.0.113.7,40021\n",
        )

    def test_parse(self):
        """
        A line, with or without its newline, reads back into its fields.
        """
        expected = PhonebookLine(1, 2, "bob", ("203.0.113.7", 40021))
        for datagram in (
            b"1,2,bob,203.0.113.7,40021\n",
            b"1,2,bob,203.0.113.7,40021",
            b"1,2,bob,203.0.113.7,40021\r\n",
            b"1,2,bob,203.0.113.7,40021\n\0\0",
        ):
            self.assertEqual(seedprotocol.parseLine(datagram), expected, datagram)

    def test_malformed(self):
        """
        Every way a line can be wrong is refused, saying why.
        """
        cases = [
            (b"", "1 comma-separated fields, not 5"),
            (b"1,2,bob,203.0.113.7", "4 comma-separated fields, not 5"),
            (b"1,2,bob,203.0.113.7,1,2", "6 comma-separated fields, not 5"),
            (b"x,2,bob,203.0.113.7,1", "slot 'x' is not a decimal number"),
            (b"-1,2,bob,203.0.113.7,1", "slot '-1' is not a decimal number"),
            (b"1, 2,bob,203.0.113.7,1", "count ' 2' is not a decimal number"),
            (b"2,2,bob,203.0.113.7,1", "slot 2 is not below the count 2"),
            (b"0,1,,203.0.113.7,1", "empty name"),
            (b"0,1,b b,203.0.113.7,1", "name 'b b' has white space or control characters"),
            (b"0,1,bob,203.0.113,1", "'203.0.113' is not an IPv4 address"),
            (b"0,1,bob,2001:db8::1,1", "'2001:db8::1' is not an IPv4 address"),
            (b"0,1,bob,203.0.113.7,0", "port 0 is not between 1 and 65535"),
            (b"0,1,bob,203.0.113.7,65536", "port 65536 is not between 1 and 65535"),
            (b"0,1,bob,203.0.113.7,99999999999", "port '99999999999' is not a decimal number"),
            (b"0,1,bob,203.0.113.7,1\n0,1,eve,198.51.100.1,2\n", "more than one line"),
        ]
        for datagram, reason in cases:
            e = self.assertRaises(MalformedLine, seedprotocol.parseLine, datagram)
            self.assertEqual(str(e), reason, datagram)

    @given(
        st.integers(0, 15).flatmap(lambda slot: st.tuples(st.just(slot), st.integers(slot + 1, 16))),
        st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True),
        st.ip_addresses(v=4).map(str),
        st.integers(1, 65535),
    )
    def test_roundTrip(self, slotCount, name, host, port):
        """
        Every line formatted reads back the same.
        """
        line = PhonebookLine(slotCount[0], slotCount[1], name, (host, port))
        self.assertEqual(seedprotocol.parseLine(seedprotocol.formatLine(line)), line)


class DirectMessageTests(SynchronousTestCase):
    """
    The original's direct message.
    """

    def test_text(self):
        """
        The direct message is the original's sentence, 46 bytes between
        alice and bob, with no newline.
        """
        text = seedprotocol.directMessage("bob", "alice")
        self.assertEqual(text, "This is a direct P2P message from bob to alice")
        self.assertEqual(len(seedprotocol.encodeDirectMessage(text)), 46)

    def test_cutOnCharacterBoundary(self):
        """
        A direct message longer than the original reads is cut where a
        character ends.
        """
        self.assertEqual(
            seedprotocol.encodeDirectMessage("\u00e9" * 600),
            ("\u00e9" * 511).encode("utf-8"),
        )

    def test_anyBytesDecode(self):
        """
        A direct message that is not UTF-8 is read with replacements, not
        refused.
        """
        self.assertEqual(seedprotocol.decodeDirectMessage(b"hi \xff"), "hi \ufffd")
