"""
systemd socket activation of UDP ports.

systemd binds the socket of a C{.socket} unit itself and hands it to the
service it starts, named by the unit's C{FileDescriptorName=}.  Twisted's
C{systemd:} endpoint adopts stream sockets only, so a datagram socket is
found here with L{twisted.python.systemd.ListenFDs} and adopted with
C{reactor.adoptDatagramPort}.  A datagram that arrived before the service
started waits in the socket, and is read once it is adopted.
"""

import os
import socket
from typing import NamedTuple

from twisted.application import service


class InheritedSocket(NamedTuple):
    """
    A UDP socket that systemd passed.
    """

    #: Its file descriptor.
    fileno: int
    #: Its address family, L{socket.AF_INET} or L{socket.AF_INET6}.
    family: int
    #: The address it is bound to, C{(host, port)}.
    address: tuple


def inheritedDatagramSocket(listenFDs, name: str) -> InheritedSocket:
    """
    Find the UDP socket systemd passed under a name.

    @param listenFDs: The L{twisted.python.systemd.ListenFDs} systemd
        passed.
    @param name: The socket's name, the C{FileDescriptorName=} of its unit.
    @raise ValueError: If there is no such socket, or it is not UDP.
    """
    named = listenFDs.inheritedNamedDescriptors()
    if name not in named:
        passed = ", ".join(sorted(named)) or "none"
        raise ValueError(f"systemd passed no socket named {name!r} (it passed: {passed})")
    fileno = named[name]
    # Only to look: detach() leaves the descriptor open.
    probe = socket.socket(fileno=fileno)
    try:
        family, kind, address = probe.family, probe.type, probe.getsockname()
    finally:
        probe.detach()
    if kind != socket.SOCK_DGRAM or family not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError(f"the socket named {name!r} is not a UDP socket")
    return InheritedSocket(fileno, family, address[:2])


class AdoptedDatagramPort(service.Service):
    """
    A service that listens with a protocol on a UDP socket systemd passed,
    rather than on a port it binds.

    @ivar listeningPort: The L{twisted.internet.interfaces.IListeningPort},
        once the service has started.
    """

    listeningPort = None

    def __init__(self, inherited: InheritedSocket, protocol, reactor):
        """
        @param inherited: The socket.
        @param protocol: The L{twisted.internet.protocol.DatagramProtocol}.
        @param reactor: The L{twisted.internet.interfaces.IReactorSocket}.
        """
        self.inherited = inherited
        self.protocol = protocol
        self._reactor = reactor

    def privilegedStartService(self):
        super().privilegedStartService()
        fileno = self.inherited.fileno
        # systemd hands sockets over blocking; Twisted needs them not to be.
        os.set_blocking(fileno, False)
        self.listeningPort = self._reactor.adoptDatagramPort(
            fileno, self.inherited.family, self.protocol
        )
        # The port has a copy of its own.
        os.close(fileno)

    def stopService(self):
        super().stopService()
        return self.listeningPort.stopListening()
