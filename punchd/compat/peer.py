"""
A native peer's side of the original protocol: the stage manager may
introduce it to an original C{test-client}, and then it talks to that
client in text.
"""

from twisted.logger import Logger
from zope.interface import implementer

from punchd import messages
from punchd.addresses import formatAddress
from punchd.compat import protocol
from punchd.compat.contact import OriginalContact
from punchd.compat.introductions import parseOriginalIntroduction
from punchd.interfaces import IPeerDialect
from punchd.punching import PUNCHING, UP


@implementer(IPeerDialect)
class OriginalPeers:
    """
    Talk to the original clients the stage manager introduces.

    @ivar contact: The L{OriginalContact} of the last introduction, or
        L{None}.
    """

    log = Logger()

    def __init__(self, text: str, messageInterval: float = 1.0, pathTimeout: float = 15.0):
        """
        @param text: The direct message to send an original client while
            the path opens.
        @param messageInterval: Seconds between two of them.
        @param pathTimeout: Seconds of silence after which an original
            client that was heard is lost.
        """
        self.text = text
        self.contact = None
        self._peer = None
        self._messageInterval = messageInterval
        self._pathTimeout = pathTimeout

    def attach(self, peer):
        self._peer = peer

    def datagramReceived(self, datagram, address) -> bool:
        contact = self.contact
        return (
            contact is not None
            and contact is self._peer.punch
            and protocol.isText(datagram)
            and contact.handleText(datagram, address)
        )

    def introduced(self, message) -> bool:
        introduction = parseOriginalIntroduction(message)
        if introduction is None:
            return False
        name, address = introduction
        current = self.contact
        if (
            current is not None
            and current is self._peer.punch
            and current.address == address
            and current.state in (PUNCHING, UP)
        ):
            return True
        if name != self._peer.wants:
            raise messages.InvalidMessage(
                f"introduced to {name}, but looking for {self._peer.wants}"
            )
        self.log.info(
            "The stage manager introduced {peer} at {address}, an original"
            " test-client: speaking its text messages to it",
            peer=name,
            address=formatAddress(address),
        )
        self.contact = OriginalContact(
            self._peer.clock,
            self._peer.send,
            self._peer.name,
            name,
            address,
            self.text,
            self._peer,
            messageInterval=self._messageInterval,
            pathTimeout=self._pathTimeout,
        )
        self._peer.adopt(self.contact)
        return True
