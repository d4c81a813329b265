"""
Stateless proof that a sender can receive at its source address.

A stage manager must not be a reflector: anyone can send it a datagram with
somebody else's source address, and whatever it answers lands on that
somebody.  So before it sends anything larger than what it received, or
anything at all to a third party about the sender, it asks the sender to
echo a cookie: a MAC (keyed BLAKE2s, RFC 7693) of the source address and
the time, under a key that never leaves the server.  Only a sender that
receives at that address can echo it, and the server keeps no state until
it does, as with DTLS's HelloVerifyRequest and WireGuard's cookie replies.
"""

import hmac
import os
import socket
import struct
from hashlib import blake2s

COOKIE_BYTES = 16
_EPOCH = struct.Struct("!I")
_MAC_BYTES = COOKIE_BYTES - _EPOCH.size


class Cookies:
    """
    Issues and checks cookies bound to a socket address.

    A cookie is valid from when it is issued until the end of the next
    period, so it lasts between one and two periods.
    """

    def __init__(self, clock, period: float = 120.0, randomBytes=os.urandom):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param period: Seconds in an epoch of the cookie's time stamp.
        @param randomBytes: The source of the secret key.
        """
        self._clock = clock
        self._period = self.period = period
        self._key = randomBytes(32)

    def useKey(self, key: bytes):
        """
        Check and issue cookies with C{key} from now on: the key several
        stage managers share, so that a cookie one issued is valid at all.
        """
        self._key = key

    def _epoch(self) -> int:
        return int(self._clock.seconds() // self._period) & 0xFFFFFFFF

    def _mac(self, epoch: int, address) -> bytes:
        host, port = address[0], address[1]
        try:
            packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        except OSError:
            packed = host.encode("utf-8", "surrogateescape")
        # Keyed BLAKE2s, not HMAC-SHA256: a MAC as strong, in a quarter of
        # the time, on every registration's path.
        return blake2s(
            _EPOCH.pack(epoch) + packed + port.to_bytes(2, "big"),
            key=self._key,
            digest_size=_MAC_BYTES,
        ).digest()

    def issue(self, address, valid: "bytes | None" = None) -> bytes:
        """
        A cookie for C{address}.

        @param address: C{(host, port)}.
        @param valid: A cookie that L{check} just found valid for
            C{address}, or L{None}.  If it was issued in this period it is
            the cookie this call would make, so it is given back as it is:
            a peer that refreshes its registration costs one HMAC, not two.
        @return: L{COOKIE_BYTES} bytes.
        """
        epoch = self._epoch()
        stamp = _EPOCH.pack(epoch)
        if valid is not None and valid.startswith(stamp):
            return valid
        return stamp + self._mac(epoch, address)

    def check(self, cookie: bytes, address) -> bool:
        """
        Whether C{cookie} was issued to C{address} in this period or the one
        before.
        """
        if len(cookie) != COOKIE_BYTES:
            return False
        (epoch,) = _EPOCH.unpack_from(cookie)
        now = self._epoch()
        if epoch not in (now, (now - 1) & 0xFFFFFFFF):
            return False
        return hmac.compare_digest(cookie[_EPOCH.size :], self._mac(epoch, address))
