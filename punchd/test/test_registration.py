"""
Tests for L{punchd.registration}: when a peer registers.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from punchd import messages, stun
from punchd.registration import Registrar


SERVER = ("192.0.2.1", 3478)
OTHER = ("192.0.2.2", 3478)


def registrar(clock, sent, draws, fallbacks=(), to=None):
    """
    A L{Registrar} on C{clock} that appends what it sends to C{sent} (and
    where to, to C{to}), its jitter drawn from C{draws}.
    """
    draws = iter(draws)

    def send(datagram, address):
        sent.append(datagram)
        if to is not None:
            to.append(address)

    return Registrar(
        clock,
        send,
        SERVER,
        "alice",
        ("bob",),
        (),
        5000,
        lambda: ("bob",),
        interval=20.0,
        random=lambda: next(draws),
        fallbacks=fallbacks,
    )


class JitterTests(SynchronousTestCase):
    def test_refreshIntervalJittered(self):
        """
        Refreshes come every interval, moved by up to a tenth of it either way as the random function says.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [1.0, 0.0, 1.0, 0.0, 0.5])
        r.start()
        self.assertEqual(len(sent), 1)
        # The first refresh was scheduled with the draw 1.0: 22 s.
        pending = sorted(call.getTime() for call in clock.getDelayedCalls())
        self.assertIn(22.0, pending)
        r.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_retransmissionJittered(self):
        """
        An unanswered registration is retransmitted after the backoff delay moved by the jitter.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [0.5, 0.0, 0.5])
        r.start()
        # Refresh in 20 s; first retransmission after 0.5 s * 0.9 = 0.45 s.
        clock.advance(0.44)
        self.assertEqual(len(sent), 1)
        clock.advance(0.02)
        self.assertEqual(len(sent), 2)
        r.stop()


class NameSecretTests(SynchronousTestCase):
    """
    The name secret: received once, proven with a MAC, rotated.
    """

    def answer(self, r, sent, **kwargs):
        request = stun.decode(sent[-1])
        r.handle(
            stun.decode(
                messages.encodeRegistered(
                    request.transactionID, ("198.51.100.1", 5000), 60, None, b"c" * 16, **kwargs
                )
            )
        )
        return sent[-1]

    def test_natWaitsForTheSecret(self):
        """
        A NAT verdict found while the registration that may be given the
        name's secret is unanswered (its answer lost, say) does not replace
        it, since a new one could not prove the name: it is retransmitted
        as it was, and a registration with the verdict follows its answer.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [0.5] * 100)
        r.start()
        first = stun.decode(sent[-1]).transactionID
        r.setNAT(("endpoint-independent", "address-dependent"))
        self.assertEqual(len(sent), 1)
        clock.advance(0.5)
        self.assertEqual(stun.decode(sent[-1]).transactionID, first)
        self.answer(r, sent, secret=b"s" * 16)
        clock.advance(0)
        again = stun.decode(sent[-1])
        self.assertNotEqual(again.transactionID, first)
        self.assertIsNotNone(again.get(messages.NAT_BEHAVIOUR))
        self.assertTrue(stun.verifyIntegrity(sent[-1], messages.registrationKey(b"s" * 16)))
        r.stop()

    def test_provenNotSent(self):
        """
        After the stage manager gives the secret, registrations carry a
        MESSAGE-INTEGRITY keyed from it and not the secret; a nonce in an
        answer moves the secret on, the one it replaces kept as previous.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [0.5] * 100)
        r.start()
        first = b"s" * 16
        self.answer(r, sent, secret=first)
        self.assertEqual(r.secrets, (first,))
        r.register()
        proof = self.answer(r, sent, nonce=b"n" * 16)
        self.assertTrue(stun.verifyIntegrity(proof, messages.registrationKey(first)))
        self.assertNotIn(first, proof)
        self.assertIsNone(stun.decode(proof).get(messages.NAME_SECRET))
        second = messages.nextSecret(first, b"n" * 16)
        self.assertEqual(r.secrets, (second, first))
        r.register()
        self.assertTrue(stun.verifyIntegrity(sent[-1], messages.registrationKey(second)))
        r.stop()

    def test_nonceAppliedToTheSecretProven(self):
        """
        The next secret is made from the secret the answered registration
        proved, as the stage manager makes it.
        """
        clock = Clock()
        sent = []
        r = registrar(clock, sent, [0.5] * 100)
        r.start()
        self.answer(r, sent, secret=b"s" * 16)
        r.register()
        # Retransmitted, unanswered, then answered: the same secret.
        clock.advance(0.5)
        self.answer(r, sent, nonce=b"n" * 16)
        self.assertEqual(r.secret, messages.nextSecret(b"s" * 16, b"n" * 16))
        r.register()
        self.answer(r, sent, secret=b"u" * 16)
        self.assertEqual(r.secrets, (b"u" * 16,))
        r.stop()


class FallbackTests(SynchronousTestCase):
    """
    A peer that knows several stage managers moves to the next when the one
    it registers with stops answering.
    """

    def test_movesAfterThreeTries(self):
        """
        Three unanswered tries, about 3.5 s, and the registration goes to
        the next stage manager at once; from the last, back to the first.
        """
        clock = Clock()
        sent, to = [], []
        r = registrar(clock, sent, [0.5] * 100, fallbacks=(OTHER,), to=to)
        r.start()
        clock.pump([0.5, 1.0, 2.0])
        self.assertEqual(to, [SERVER] * 4 + [OTHER])
        self.assertEqual(r.server, OTHER)
        self.assertEqual(clock.seconds(), 3.5)
        clock.pump([0.5, 1.0, 2.0])
        self.assertEqual(to[-1], SERVER)
        r.stop()

    def test_staysWhileAnswered(self):
        """
        A stage manager that answers is kept; without fallbacks the peer
        keeps trying the one it has.
        """
        clock = Clock()
        sent, to = [], []
        r = registrar(clock, sent, [0.5] * 100, to=to)
        r.start()
        clock.pump([0.5, 1.0, 2.0, 4.0])
        self.assertEqual(set(to), {SERVER})
        r.stop()
