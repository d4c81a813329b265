"""
L{punchd.stun} cross-checked against an independent STUN implementation,
aioice's (a test-only dependency): random valid messages encoded by one are
decoded identically by the other, for the attribute types both know, with
and without MESSAGE-INTEGRITY and FINGERPRINT.
"""

from ipaddress import ip_address

from twisted.trial.unittest import SynchronousTestCase

from punchd import stun
from punchd.test.optional import given, notInstalled, require, settings, st

try:
    from aioice import stun as aioice
except ImportError:  # pragma: no cover
    aioice = None




#: aioice's method names for the methods it knows.
METHODS = {
    0x001: "BINDING",
    0x002: "SHARED_SECRET",
    0x003: "ALLOCATE",
    0x004: "REFRESH",
    0x006: "SEND",
    0x007: "DATA",
    0x008: "CREATE_PERMISSION",
    0x009: "CHANNEL_BIND",
}

#: punchd's classes, and aioice's.
CLASSES = {
    stun.REQUEST: "REQUEST",
    stun.INDICATION: "INDICATION",
    stun.SUCCESS: "RESPONSE",
    stun.ERROR: "ERROR",
}

addresses = st.tuples(
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(str),
    st.integers(0, 65535),
)
texts = st.text(max_size=60)

#: Each attribute type both know: its name in aioice, a strategy for its
#: value as aioice holds it, how punchd encodes that value and how it
#: decodes it back.
ATTRIBUTES = {
    stun.MAPPED_ADDRESS: (
        "MAPPED-ADDRESS",
        addresses,
        lambda v, txid: stun.encodeAddress(*v),
        lambda raw, txid: stun.decodeAddress(raw),
    ),
    stun.XOR_MAPPED_ADDRESS: (
        "XOR-MAPPED-ADDRESS",
        addresses,
        lambda v, txid: stun.encodeXorAddress(*v, txid),
        lambda raw, txid: stun.decodeXorAddress(raw, txid),
    ),
    stun.RESPONSE_ORIGIN: (
        "RESPONSE-ORIGIN",
        addresses,
        lambda v, txid: stun.encodeAddress(*v),
        lambda raw, txid: stun.decodeAddress(raw),
    ),
    stun.OTHER_ADDRESS: (
        "OTHER-ADDRESS",
        addresses,
        lambda v, txid: stun.encodeAddress(*v),
        lambda raw, txid: stun.decodeAddress(raw),
    ),
    stun.CHANGE_REQUEST: (
        "CHANGE-REQUEST",
        st.sampled_from([0, 2, 4, 6]),
        lambda v, txid: stun.encodeChangeRequest(bool(v & 4), bool(v & 2)),
        lambda raw, txid: 4 * stun.decodeChangeRequest(raw)[0]
        + 2 * stun.decodeChangeRequest(raw)[1],
    ),
    stun.ERROR_CODE: (
        "ERROR-CODE",
        st.tuples(st.integers(300, 699), st.text(max_size=127)),
        lambda v, txid: stun.encodeErrorCode(*v),
        lambda raw, txid: stun.decodeErrorCode(raw),
    ),
    stun.USERNAME: (
        "USERNAME",
        texts,
        lambda v, txid: v.encode("utf-8"),
        lambda raw, txid: raw.decode("utf-8"),
    ),
    stun.SOFTWARE: (
        "SOFTWARE",
        texts,
        lambda v, txid: v.encode("utf-8"),
        lambda raw, txid: raw.decode("utf-8"),
    ),
    stun.REALM: (
        "REALM",
        texts,
        lambda v, txid: v.encode("utf-8"),
        lambda raw, txid: raw.decode("utf-8"),
    ),
    stun.NONCE: (
        "NONCE",
        st.binary(max_size=60),
        lambda v, txid: v,
        lambda raw, txid: raw,
    ),
}

#: What to add at the end: nothing, FINGERPRINT, or MESSAGE-INTEGRITY then
#: FINGERPRINT, keyed with the key.
TRAILERS = st.one_of(
    st.just((None, False)),
    st.just((None, True)),
    st.tuples(st.binary(min_size=1, max_size=64), st.booleans()),
)


@st.composite
def messages(draw):
    """
    A random valid message: method, class, transaction id, and attribute
    values of distinct types both implementations know, as aioice holds
    them, in random order.
    """
    types = draw(st.lists(st.sampled_from(sorted(ATTRIBUTES)), unique=True, max_size=6))
    return (
        draw(st.sampled_from(sorted(METHODS))),
        draw(st.sampled_from(sorted(CLASSES))),
        draw(st.binary(min_size=12, max_size=12)),
        [(t, draw(ATTRIBUTES[t][1])) for t in types],
        draw(TRAILERS),
    )


def normal(attrType, value):
    """
    A value in one form for comparing: addresses with their host parsed.
    """
    if ATTRIBUTES[attrType][1] is addresses:
        return (ip_address(value[0]), value[1])
    return value


class AioiceCrossCheckTests(SynchronousTestCase):
    """
    L{punchd.stun} and aioice read each other's messages alike.
    """

    def setUp(self):
        require(self, aioice is not None, notInstalled("aioice"))

    @settings(max_examples=300, deadline=None)
    @given(messages())
    def test_aioiceToPunchd(self, drawn):
        """
        Every message aioice encodes, punchd decodes to the same method,
        class, transaction id and attribute values, in the same order, and
        its MESSAGE-INTEGRITY verifies and FINGERPRINT checks.
        """
        method, messageClass, txid, attributes, (key, fingerprint) = drawn
        message = aioice.Message(
            aioice.Method[METHODS[method]],
            aioice.Class[CLASSES[messageClass]],
            transaction_id=txid,
            attributes={ATTRIBUTES[t][0]: v for t, v in attributes},
        )
        if key is not None:
            message.add_message_integrity(key)
        elif fingerprint:
            message.add_fingerprint()
        data = bytes(message)
        decoded = stun.decode(data)
        self.assertEqual(
            (decoded.method, decoded.messageClass, decoded.transactionID),
            (method, messageClass, txid),
        )
        ours = [
            (t, normal(t, ATTRIBUTES[t][3](raw, txid)))
            for t, raw in decoded.attributes
            if t not in (stun.MESSAGE_INTEGRITY, stun.FINGERPRINT)
        ]
        self.assertEqual(ours, [(t, normal(t, v)) for t, v in attributes])
        trailer = [t for t, _ in decoded.attributes if t in (stun.MESSAGE_INTEGRITY, stun.FINGERPRINT)]
        if key is not None:
            self.assertEqual(trailer, [stun.MESSAGE_INTEGRITY, stun.FINGERPRINT])
            self.assertTrue(stun.verifyIntegrity(data, key))
            self.assertFalse(stun.verifyIntegrity(data, key + b"x"))
        else:
            self.assertEqual(trailer, [stun.FINGERPRINT] if fingerprint else [])

    @settings(max_examples=300, deadline=None)
    @given(messages())
    def test_punchdToAioice(self, drawn):
        """
        Every message punchd encodes, aioice decodes to the same method,
        class, transaction id and attribute values, in the same order, and
        its MESSAGE-INTEGRITY and FINGERPRINT check.
        """
        method, messageClass, txid, attributes, (key, fingerprint) = drawn
        data = stun.encode(
            stun.Message(
                method,
                messageClass,
                txid,
                tuple((t, ATTRIBUTES[t][2](v, txid)) for t, v in attributes),
            ),
            integrityKey=key,
            fingerprint=fingerprint,
        )
        parsed = aioice.parse_message(data)
        self.assertEqual(
            (parsed.message_method.name, parsed.message_class.name, parsed.transaction_id),
            (METHODS[method], CLASSES[messageClass], txid),
        )
        names = {name: t for t, (name, _, _, _) in ATTRIBUTES.items()}
        theirs = [
            (names[name], normal(names[name], value))
            for name, value in parsed.attributes.items()
            if name not in ("MESSAGE-INTEGRITY", "FINGERPRINT")
        ]
        self.assertEqual(theirs, [(t, normal(t, v)) for t, v in attributes])
        self.assertEqual("FINGERPRINT" in parsed.attributes, fingerprint)
        if key is not None:
            self.assertTrue(parsed.check_message_integrity(key))
            self.assertFalse(parsed.check_message_integrity(key + b"x"))
        else:
            self.assertNotIn("MESSAGE-INTEGRITY", parsed.attributes)
