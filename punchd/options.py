"""
Typed option values shared by the command lines, with errors that name the
option.
"""

from ipaddress import ip_address

from twisted.python import usage

from punchd.identity import MIN_SECRET_BYTES
from punchd.messages import sharedKey


def named(option: str, coerce):
    """
    Wrap a coerce function so that a bad value is a L{usage.UsageError}
    naming the option, rather than Twisted's anonymous "Parameter type
    enforcement failed".

    @param option: The long option name, without dashes.
    @param coerce: A function of the option's text that returns its value or
        raises L{ValueError} saying what is wrong.
    """

    def coerceNamed(value):
        try:
            return coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{option}: {e}") from None

    coerceNamed.coerceDoc = getattr(coerce, "coerceDoc", "")
    return coerceNamed


def port(value: str) -> int:
    """
    A UDP port number, 0 to 65535.
    """
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"{number} is not a port number between 0 and 65535")
    return number


def positiveFloat(value: str) -> float:
    """
    A number of seconds greater than zero.
    """
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not number > 0 or number == float("inf"):
        raise ValueError(f"{value!r} must be greater than zero")
    return number


positiveFloat.coerceDoc = "Seconds, greater than zero."


def positiveInt(value: str) -> int:
    """
    A whole number greater than zero.
    """
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise ValueError(f"{number} must be at least 1")
    return number


def interface(value: str) -> str:
    """
    An IPv4 or IPv6 address literal to listen on, or the empty string for
    every IPv4 address.
    """
    if value == "":
        return value
    try:
        return str(ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None


def rate(value: str) -> float:
    """
    A number of events a second, or 0 for no limit.
    """
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not 0 <= number < float("inf"):
        raise ValueError(f"{value!r} must be 0 (no limit) or more")
    return number


def _readSecret(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
    except OSError as e:
        raise ValueError(f"cannot read {path!r}: {e.strerror}") from None
    if not secret:
        raise ValueError(f"{path!r} is empty")
    return secret


def secretFile(path: str) -> bytes:
    """
    The key made from a file that holds a shared secret.

    @return: The key: see L{punchd.messages.sharedKey}.
    """
    return sharedKey(_readSecret(path))


def peerSecretFile(path: str) -> bytes:
    """
    The secret, white space around it aside, in a file that peers share out
    of band: at least L{punchd.identity.MIN_SECRET_BYTES} bytes.
    """
    secret = _readSecret(path)
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{path!r} holds {len(secret)} bytes; a peer secret needs at least"
            f" {MIN_SECRET_BYTES}"
        )
    return secret


def turnSecretFile(path: str) -> bytes:
    """
    The secret a TURN server checks credentials with (coturn's
    C{--static-auth-secret}), white space around it aside, from a file.
    """
    return _readSecret(path)
