"""
Socket addresses: parsing them from options, writing them for people, and
telling which a peer may send to.
"""

import socket
from ipaddress import ip_address

from twisted.internet.address import IPv4Address, IPv6Address

_UNSPECIFIED = bytes(4)
_LIMITED_BROADCAST = b"\xff" * 4


def formatAddress(address) -> str:
    """
    Write a socket address the way people read one.

    @param address: C{(host, port)}.
    @return: C{"192.0.2.1:8080"}, or C{"[2001:db8::1]:8080"} for IPv6.
    """
    host, port = address[0], address[1]
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def unmapped(address):
    """
    The wire form of a socket address: an IPv4-mapped IPv6 address, as a
    dual-stack socket reports an IPv4 sender, becomes the IPv4 address.

    @param address: C{(host, port)}, or the longer IPv6 socket address.
    @return: C{(host, port)}.
    """
    host, port = address[0], address[1]
    if ":" in host:
        mapped = ip_address(host).ipv4_mapped
        if mapped is not None:
            return str(mapped), port
    return host, port


def splitHostPort(text: str):
    """
    Split C{HOST:PORT}, where an IPv6 literal HOST is in brackets.

    @return: C{(host, port)}, with the port as an L{int}.
    @raise ValueError: If C{text} is not of that form or the port is not
        1-65535.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port}")
    try:
        return host, parsePort(port)
    except ValueError as e:
        raise ValueError(f"{text!r}: {e}") from None


def parsePort(text: str) -> int:
    """
    A UDP port number, 1-65535.

    @raise ValueError: If C{text} is not a number in that range.
    """
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"port {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is not between 1 and 65535")
    return port


def resolve(host: str, port: int):
    """
    Resolve a host name or address literal to one UDP socket address.

    IPv4 is preferred where the name has both, since the stage manager's
    peers are usually behind IPv4 NATs.

    @return: C{(address, port)} with the address as a literal.
    @raise ValueError: If the name does not resolve.
    """
    return resolveFamilies(host, port)[0]


def resolveFamilies(host: str, port: int) -> tuple:
    """
    Resolve a host name or address literal to a UDP socket address of each
    family it has: a name with an A and an AAAA record gives both.

    @return: One C{(address, port)} for each family, IPv4 first.
    @raise ValueError: If the name does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ValueError(f"cannot resolve {host!r}: {e}") from None
    found = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            found.setdefault(family, (sockaddr[0], sockaddr[1]))
    if not found:
        raise ValueError(f"cannot resolve {host!r}: no IPv4 or IPv6 address")
    return tuple(found[f] for f in (socket.AF_INET, socket.AF_INET6) if f in found)


def localAddressTowards(destination):
    """
    The address of this machine's interface that reaches C{destination}.

    Connecting a UDP socket sends nothing; it only asks the kernel for a
    route, whose source address is the one peers on the same network can
    reach us at.

    @param destination: C{(host, port)}.
    @return: The local address as text, or L{None} if there is no route.
    """
    family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect(destination)
        except OSError:
            return None
        return s.getsockname()[0]


def unusableReason(address, ipv6: "bool | None" = None, own=()) -> "str | None":
    """
    Say why a socket address a message named is not one to send to.

    @param address: C{(host, port)}, the host an address literal.
    @param ipv6: Whether the socket that would send is IPv6 (L{True}) or
        IPv4 (L{False}); L{None} to leave the family unchecked.
    @param own: The sender's own C{(host, port)}s, which it must not be
        told to reach.
    @return: L{None} if the address is usable, or a short fixed reason:
        C{"not an IP address"}, C{"IPv4-mapped address on an IPv4
        socket"}, C{"IPv6 address on an IPv4 socket"}, C{"IPv4 address on
        an IPv6 socket"}, C{"unspecified address"}, C{"broadcast address"},
        C{"multicast address"}, C{"port 0"} or C{"own address"}.
    """
    host, port = address[0], address[1]
    if ":" not in host:
        # IPv4, as nearly every address is: judged on its packed bytes,
        # for the stage manager checks those of every registration.
        try:
            packed = socket.inet_pton(socket.AF_INET, host)
        except OSError:
            return "not an IP address"
        if ipv6:
            return "IPv4 address on an IPv6 socket"
    else:
        try:
            ip = ip_address(host)
        except ValueError:
            return "not an IP address"
        mapped = ip.ipv4_mapped
        if ipv6 is False:
            if mapped is not None:
                return "IPv4-mapped address on an IPv4 socket"
            return "IPv6 address on an IPv4 socket"
        if mapped is None:
            if ip.is_unspecified:
                return "unspecified address"
            if ip.is_multicast:
                return "multicast address"
            packed = None
        else:
            packed = mapped.packed
    if packed is not None:
        if packed == _UNSPECIFIED:
            return "unspecified address"
        if packed == _LIMITED_BROADCAST:
            return "broadcast address"
        if 224 <= packed[0] <= 239:
            return "multicast address"
    if port == 0:
        return "port 0"
    if (host, port) in own:
        return "own address"
    return None


def udpAddress(address):
    """
    C{(host, port)} as Twisted's L{IPv4Address} or L{IPv6Address} of type
    C{'UDP'}, what C{getPeer()} of a UDP transport gives.
    """
    host, port = address
    return (IPv6Address if ":" in host else IPv4Address)("UDP", host, port)
