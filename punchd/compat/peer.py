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

    @ivar contacts: The L{OriginalContact} of the last introduction to each
        contact that is an original client, by name.
    """

    log = Logger()

    def __init__(
        self,
        text: "str | None" = None,
        messageInterval: float = 1.0,
        pathTimeout: float = 15.0,
        punchTimeout: float = 5.0,
    ):
        """
        @param text: The direct message to send an original client while
            the path opens; by default the original's, from this peer to
            that client.
        @param messageInterval: Seconds between two of them.
        @param pathTimeout: Seconds of silence after which an original
            client that was heard is lost.
        @param punchTimeout: Seconds to send to an original client not yet
            heard before giving up until the next introduction: the stage
            manager cannot prove an original client's address, so whoever
            spoofs one gets a few of our datagrams sent there, not a
            stream.
        """
        self.text = text
        self.contacts = {}
        self._peer = None
        self._messageInterval = messageInterval
        self._pathTimeout = pathTimeout
        self._punchTimeout = punchTimeout

    def attach(self, peer):
        self._peer = peer

    def datagramReceived(self, datagram, address) -> bool:
        if not protocol.isText(datagram):
            return False
        return any(
            contact is self._peer.pathTo(name) and contact.handleText(datagram, address)
            for name, contact in self.contacts.items()
        )

    def introduced(self, message) -> bool:
        introduction = parseOriginalIntroduction(message)
        if introduction is None:
            return False
        name, address = introduction
        if name not in self._peer.wants:
            raise messages.InvalidMessage(f"introduced to {name}, who is not a contact")
        current = self.contacts.get(name)
        if (
            current is not None
            and current is self._peer.pathTo(name)
            and current.address == address
            and current.state in (PUNCHING, UP)
        ):
            return True
        self.log.info(
            "The stage manager introduced {peer} at {address}, an original"
            " test-client: speaking its text messages to it",
            peer=name,
            address=formatAddress(address),
        )
        contact = self.contacts[name] = OriginalContact(
            self._peer.clock,
            self._peer.send,
            self._peer.name,
            name,
            address,
            protocol.directMessage(self._peer.name, name) if self.text is None else self.text,
            self._peer,
            messageInterval=self._messageInterval,
            pathTimeout=self._pathTimeout,
            punchTimeout=self._punchTimeout,
        )
        self._peer.adopt(contact)
        return True
