"""
Tests for L{punchd.messages}: the shortcuts taken on the stage manager's
per-datagram path give the answers of the plain definitions they replace.
"""

from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.test.optional import given, settings, st

FUZZ = settings(max_examples=300, deadline=None)


def plainValidateName(name):
    """
    The rule for names, spelled out.
    """
    if not name:
        raise messages.InvalidMessage("empty name")
    if len(name) > messages.MAX_NAME_BYTES:
        raise messages.InvalidMessage("too long")
    text = name.decode("utf-8")
    if not text.isprintable() or any(c.isspace() for c in text):
        raise messages.InvalidMessage("bad characters")
    return text


def plainParseRegistration(message):
    """
    L{messages.parseRegistration} as first written, with get() and getAll().
    """
    txid = message.transactionID
    locals_ = message.getAll(messages.LOCAL_ADDRESS)
    if len(locals_) > messages.MAX_LOCAL_ADDRESSES:
        raise messages.InvalidMessage("too many")
    localAddresses = tuple(
        dict.fromkeys(stun.decodeXorAddress(v, txid) for v in locals_)
    )
    name = message.get(messages.NAME)
    if name is None:
        raise messages.InvalidMessage("no NAME")
    wants = tuple(plainValidateName(w) for w in message.getAll(messages.PEER))
    if len(wants) > messages.MAX_CONTACTS or len(set(wants)) != len(wants):
        raise messages.InvalidMessage("too many PEERs, or one twice")
    seeking = message.getAll(messages.SEEKING)
    if not seeking:
        sought = ()
    elif seeking[-1] == b"":
        sought = wants
    else:
        bits = int.from_bytes(seeking[-1], "big")
        width = 8 * len(seeking[-1])
        if len(seeking[-1]) != (len(wants) + 7) // 8:
            raise messages.InvalidMessage("bitmap of the wrong size")
        sought = tuple(w for i, w in enumerate(wants) if bits >> (width - 1 - i) & 1)
    return messages.Registration(plainValidateName(name), wants, localAddresses, sought)


def outcome(f, *args):
    try:
        return f(*args)
    except (messages.InvalidMessage, stun.StunError, UnicodeDecodeError):
        return "refused"


names = st.one_of(
    st.binary(max_size=70),
    st.text(max_size=20).map(lambda t: t.encode("utf-8")),
    st.text(st.characters(min_codepoint=0x1F, max_codepoint=0x80), max_size=66).map(
        lambda t: t.encode("utf-8")
    ),
)
addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 0xFFFF)).map(
        lambda a: stun.encodeXorAddress(a[0], a[1], bytes(12))
    ),
    st.binary(max_size=20),
)
registrations = st.builds(
    lambda attributes: stun.Message(
        messages.REGISTER, stun.REQUEST, bytes(12), tuple(attributes)
    ),
    st.lists(
        st.one_of(
            names.map(lambda n: (messages.NAME, n)),
            names.map(lambda n: (messages.PEER, n)),
            addresses.map(lambda a: (messages.LOCAL_ADDRESS, a)),
            st.binary(max_size=3).map(lambda b: (messages.SEEKING, b)),
        ),
        max_size=12,
    ),
)


class ValidateNameTests(SynchronousTestCase):
    """
    Tests for L{messages.validateName}.
    """

    @FUZZ
    @given(names)
    def test_sameAsRule(self, name):
        """
        A name is taken or refused as the rule says.
        """
        self.assertEqual(outcome(messages.validateName, name), outcome(plainValidateName, name))

    def test_asciiEdges(self):
        """
        Printable ASCII is taken; space, DEL, control characters, the empty
        name and a 65-byte name are refused.
        """
        self.assertEqual(messages.validateName(b"!~" * 32), "!~" * 32)
        for bad in (b"a b", b"a\x7f", b"a\x00", b"\t", b"", b"a" * 65):
            self.assertRaises(messages.InvalidMessage, messages.validateName, bad)


class ParseRegistrationTests(SynchronousTestCase):
    """
    Tests for L{messages.parseRegistration}.
    """

    @FUZZ
    @given(registrations)
    def test_sameAsPlain(self, message):
        """
        A registration reads, or is refused, as with get() and getAll().
        """
        self.assertEqual(
            outcome(messages.parseRegistration, message),
            outcome(plainParseRegistration, message),
        )

    def test_firstNameCounts(self):
        """
        Of two NAMEs, the first counts.
        """
        message = stun.Message(
            messages.REGISTER,
            stun.REQUEST,
            bytes(12),
            ((messages.NAME, b"alice"), (messages.NAME, b"bob")),
        )
        self.assertEqual(messages.parseRegistration(message).name, "alice")


class ContactsTests(SynchronousTestCase):
    """
    A registration names several contacts and seeks some of them.
    """

    def roundTrip(self, wants, seeking):
        datagram = messages.encodeRegistration(
            bytes(12), messages.Registration("alice", wants, seeking=seeking)
        )
        return messages.parseRegistration(stun.decode(datagram))

    def test_seekingSome(self):
        """
        The contacts sought come back in order, from a bitmap past the
        first byte.
        """
        wants = tuple(f"peer{i}" for i in range(11))
        for seeking in ((), wants[:1], wants[3:4], wants[9:], wants[::2], wants):
            registration = self.roundTrip(wants, seeking)
            self.assertEqual((registration.wants, registration.seeking), (wants, seeking))

    def test_seekingAllIsEmpty(self):
        """
        Seeking every contact takes an empty SEEKING, as one contact always
        did.
        """
        datagram = messages.encodeRegistration(
            bytes(12), messages.Registration("alice", ("bob", "carol"), seeking=("bob", "carol"))
        )
        self.assertEqual(stun.decode(datagram).get(messages.SEEKING), b"")

    def test_limits(self):
        """
        More than MAX_CONTACTS contacts, one named twice, or a bitmap of
        the wrong size, are refused.
        """
        for attributes in (
            [(messages.PEER, b"p%d" % i) for i in range(messages.MAX_CONTACTS + 1)],
            [(messages.PEER, b"bob"), (messages.PEER, b"bob")],
            [(messages.PEER, b"bob"), (messages.SEEKING, b"\x80\x00")],
        ):
            message = stun.Message(
                messages.REGISTER,
                stun.REQUEST,
                bytes(12),
                ((messages.NAME, b"alice"), *attributes),
            )
            self.assertRaises(messages.InvalidMessage, messages.parseRegistration, message)


class AnswerTests(SynchronousTestCase):
    """
    The answers made from encoded attributes are the bytes that
    L{stun.encode} makes of the same message.
    """

    @FUZZ
    @given(
        st.ip_addresses(v=4).map(str),
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFFFFFF),
        st.lists(st.sampled_from([0, 1, 2]), max_size=messages.MAX_CONTACTS),
        st.binary(min_size=12, max_size=12),
    )
    def test_registered(self, host, port, lifetime, peerStates, txid):
        """
        L{messages.encodeRegistered}.
        """
        attributes = [
            (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(host, port, txid)),
            (messages.LIFETIME, lifetime.to_bytes(4, "big")),
        ]
        if peerStates:
            attributes.append((messages.PEER_STATE, bytes(peerStates)))
        self.assertEqual(
            messages.encodeRegistered(txid, (host, port), lifetime, tuple(peerStates)),
            stun.encode(
                stun.Message(messages.REGISTER, stun.SUCCESS, txid, tuple(attributes)),
                fingerprint=True,
            ),
        )

    @FUZZ
    @given(
        st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
        st.integers(0, 0xFFFF),
        st.one_of(
            st.binary(min_size=12, max_size=12),
            st.binary(min_size=16, max_size=16).filter(lambda t: t[:4] != b"\x21\x12\xa4\x42"),
        ),
        st.booleans(),
    )
    def test_binding(self, host, port, txid, fingerprint):
        """
        L{messages.bindingAnswer}, to RFC 8489 and classic requests, with
        and without a FINGERPRINT.
        """
        request = stun.decode(
            stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid), fingerprint=fingerprint)
        )
        if request.classic:
            attribute = (stun.MAPPED_ADDRESS, stun.encodeAddress(host, port))
        else:
            attribute = (stun.XOR_MAPPED_ADDRESS, stun.encodeXorAddress(host, port, txid))
        self.assertEqual(
            messages.bindingAnswer(request, (host, port)),
            stun.encode(
                stun.Message(stun.BINDING, stun.SUCCESS, txid, (attribute,)),
                fingerprint=fingerprint,
            ),
        )

    @FUZZ
    @given(
        st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
        st.integers(0, 0xFFFF),
        st.binary(min_size=12, max_size=12),
    )
    def test_bareBinding(self, host, port, txid):
        """
        L{messages.bareBindingAnswer} answers a bare request as
        L{messages.bindingAnswer} answers it decoded.
        """
        request = messages.BARE_BINDING_REQUEST + txid
        self.assertEqual(
            messages.bareBindingAnswer(txid, (host, port)),
            messages.bindingAnswer(stun.decode(request), (host, port)),
        )


#: A limit in bytes to cut texts to.
LIMIT = 1024


class DirectMessageTests(SynchronousTestCase):
    """
    A text cut to a limit is cut where a character ends, so that it still
    reads.
    """

    @FUZZ
    @given(st.text(min_size=1000, max_size=1100))
    def test_cutOnCharacterBoundary(self, text):
        """
        L{messages.utf8Prefix} is the longest prefix of the text whose UTF-8
        fits the limit.
        """
        received = messages.utf8Prefix(text, LIMIT).decode("utf-8")
        self.assertTrue(text.startswith(received))
        self.assertLessEqual(len(received.encode("utf-8")), LIMIT)
        if received != text:
            self.assertGreater(
                len((received + text[len(received)]).encode("utf-8")), LIMIT
            )

    def test_cutInsideCharacter(self):
        """
        A limit that falls inside a two-byte character leaves it out.
        """
        text = "x" + "\u00e9" * 600
        self.assertEqual(
            messages.utf8Prefix(text, LIMIT), ("x" + "\u00e9" * 511).encode("utf-8")
        )


#: The methods the IANA STUN methods registry assigns or reserves below
#: 0x100: RFC 8489's, TURN's (RFC 8656), TURN-TCP's (RFC 6062) and Google's
#: GOOG-PING.
REGISTERED_METHODS = frozenset(range(0x000, 0x00D)) - {0x005} | {0x080}


class MethodTests(SynchronousTestCase):
    """
    punchd's own STUN methods.
    """

    def test_unregistered(self):
        """
        No punchd method is a method the IANA registry assigns, so no
        dissector names punchd's messages after another protocol's.
        """
        ours = {messages.REGISTER, messages.UNREGISTER, messages.INTRODUCE}
        self.assertEqual(len(ours), 3)
        self.assertEqual(ours & REGISTERED_METHODS, set())

    def test_stunToDemultiplexers(self):
        """
        Every message of every punchd method, in every class, starts with a
        byte of 0 to 3, which RFC 7983 demultiplexers take for STUN.
        """
        for method in (messages.REGISTER, messages.UNREGISTER, messages.INTRODUCE):
            for messageClass in (stun.REQUEST, stun.INDICATION, stun.SUCCESS, stun.ERROR):
                datagram = stun.encode(stun.Message(method, messageClass, bytes(12)))
                self.assertLessEqual(datagram[0], 3, (hex(method), messageClass))


class MappedCandidateTests(SynchronousTestCase):
    """
    A C{CANDIDATE} carrying a port mapping instead of a relayed address.
    """

    def test_roundTrip(self):
        """
        A mapped candidate goes in C{MAPPED-ADDRESS} and comes back mapped.
        """
        txid = bytes(12)
        candidate = messages.RelayCandidate("alice", ("203.0.113.1", 40000), "bob", mapped=True)
        datagram = messages.encodeCandidate(txid, candidate, b"k" * 16)
        message = stun.decode(datagram)
        self.assertIsNotNone(message.get(messages.MAPPED_ADDRESS))
        self.assertIsNone(message.get(messages.RELAYED_ADDRESS))
        self.assertEqual(messages.parseCandidate(message), candidate)

    def test_oneAddressOnly(self):
        """
        A candidate with both addresses, or with nothing but a name, is
        invalid.
        """
        txid = bytes(12)
        address = stun.encodeXorAddress("203.0.113.1", 40000, txid)
        for attributes in (
            ((messages.NAME, b"alice"),),
            (
                (messages.NAME, b"alice"),
                (messages.RELAYED_ADDRESS, address),
                (messages.MAPPED_ADDRESS, address),
            ),
        ):
            message = stun.decode(
                stun.encode(stun.Message(messages.CANDIDATE, stun.REQUEST, txid, attributes))
            )
            self.assertRaises(messages.InvalidMessage, messages.parseCandidate, message)


class NATBehaviourTests(SynchronousTestCase):
    """
    L{messages.NAT_BEHAVIOUR} in registrations, introductions and
    candidates.
    """

    SYMMETRIC = ("address-and-port-dependent", "address-and-port-dependent")

    def test_registration(self):
        """
        A registration carries the NAT's behaviour.
        """
        datagram = messages.encodeRegistration(
            bytes(12), messages.Registration("alice", ("bob",), nat=self.SYMMETRIC)
        )
        self.assertEqual(messages.parseRegistration(stun.decode(datagram)).nat, self.SYMMETRIC)

    def test_introduction(self):
        """
        An introduction carries the other peer's NAT behaviour.
        """
        introduction = messages.Introduction(
            "bob", ("203.0.113.1", 1), (), b"k" * 16, nat=("endpoint-independent",) * 2
        )
        datagram = messages.encodeIntroduction(bytes(12), introduction, b"x")
        self.assertEqual(messages.parseIntroduction(stun.decode(datagram)), introduction)

    def test_candidateWithoutRelayedAddress(self):
        """
        A candidate may carry the NAT's behaviour alone.
        """
        candidate = messages.RelayCandidate("alice", None, "bob", self.SYMMETRIC)
        datagram = messages.encodeCandidate(bytes(12), candidate, b"x")
        self.assertEqual(messages.parseCandidate(stun.decode(datagram)), candidate)

    def test_emptyCandidate(self):
        """
        A candidate with neither a relayed address nor a NAT behaviour is
        refused.
        """
        message = stun.Message(
            messages.CANDIDATE, stun.REQUEST, bytes(12), ((messages.NAME, b"alice"),)
        )
        self.assertRaises(messages.InvalidMessage, messages.parseCandidate, message)

    def test_emptyAddressRefused(self):
        """
        A candidate whose L{messages.MAPPED_ADDRESS} or
        L{messages.RELAYED_ADDRESS} is empty is refused as invalid, naming
        the attribute.
        """
        for attribute, what in (
            (messages.MAPPED_ADDRESS, "MAPPED-ADDRESS"),
            (messages.RELAYED_ADDRESS, "RELAYED-ADDRESS"),
        ):
            message = stun.Message(
                messages.CANDIDATE,
                stun.REQUEST,
                bytes(12),
                ((messages.NAME, b"alice"), (attribute, b"")),
            )
            e = self.assertRaises(messages.InvalidMessage, messages.parseCandidate, message)
            self.assertIn(f"bad {what}", e.reason)

    def test_unknownLeftOut(self):
        """
        A behaviour not known, or of the wrong length, is left out with the
        reason, and the message read all the same.
        """
        for value, why in (
            (b"\x03\x00", "NAT-BEHAVIOUR 0300, a behaviour not known"),
            (b"\x00", "NAT-BEHAVIOUR of 1 bytes"),
        ):
            message = stun.Message(
                messages.INTRODUCE,
                stun.REQUEST,
                bytes(12),
                (
                    (messages.NAME, b"bob"),
                    (messages.PEER_ADDRESS, stun.encodeXorAddress("203.0.113.1", 1, bytes(12))),
                    (messages.PUNCH_KEY, b"k" * 16),
                    (messages.NAT_BEHAVIOUR, value),
                ),
            )
            introduction = messages.parseIntroduction(message)
            self.assertEqual((introduction.nat, introduction.natDropped), (None, why))

    def test_pairsShared(self):
        """
        Every read of one behaviour gives the same tuple, so that entries
        holding it cost no more than a reference.
        """
        a, _ = messages.readBehaviour(b"\x02\x02")
        b, _ = messages.readBehaviour(bytes((2, 2)))
        self.assertIs(a, b)
