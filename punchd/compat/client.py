"""
A peer that speaks the original programs' text protocol
(C{punch-peer --seed-compat}), to an original C{test-server}.

It registers with its bare name and reads the phonebook lines that come
back, as the original C{test-client} does, but more carefully:

  - only datagrams from the server's exact address and port are taken as
    phonebook lines, and a line that does not parse is dropped and logged
    (at a bounded rate) instead of being half-read;
  - until the contact is in the phonebook it registers again after 1, 2,
    4, ... seconds, up to the refresh interval, instead of every 30 s;
  - only text from the contact's address is taken as a direct message;
  - a contact that falls silent is looked up again at once.

With the contact found, an L{punchd.compat.contact.OriginalContact} opens
the path, and a L{punchd.greeter.Greeter} on it sends the direct message
once a second and logs what comes back.
"""

from twisted.internet.defer import CancelledError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from punchd.addresses import formatAddress
from punchd.compat import protocol
from punchd.compat.contact import OriginalContact
from punchd.drops import DropCounter
from punchd.greeter import Greeter
from punchd.interfaces import IPathObserver, IPathReceiver
from punchd.punching import PUNCHING, UP
from punchd.registration import NOT_ANSWERING_AFTER
from punchd.transactions import Transactions, backoff

#: Seconds before the first registration is repeated while the contact is
#: not in the phonebook; each later one waits twice as long, up to the
#: refresh interval.
LOOKUP_RETRY = 1.0

#: The key of the look-up in flight: the registrations repeated until the
#: contact shows up in the phonebook.
_LOOKUP = "lookup"


@implementer(IPathObserver, IPathReceiver)
class SeedPeerProtocol(DatagramProtocol):
    """
    A peer of the original text protocol.

    @ivar contact: The L{OriginalContact} talking to the contact, or
        L{None} before the contact is found.
    @ivar application: The L{Greeter} on the path.
    @ivar drops: The L{DropCounter} of datagrams dropped, by reason.
    @ivar lines: How many phonebook lines arrived.
    @ivar pathTimeout: Seconds of silence after which the contact is looked
        up again.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock,
        server,
        name: str,
        wants: str,
        interval: float = 20.0,
        text: "str | None" = None,
        messageInterval: float = 1.0,
        pathTimeout: float = 15.0,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param server: The original server's C{(host, port)}, resolved.
        @param name: This peer's name.
        @param wants: The contact's name.
        @param interval: Seconds between registrations once the contact is
            found.
        @param text: The direct message; by default the original's.
        @param messageInterval: Seconds between two direct messages.
        @param pathTimeout: Seconds of silence after which a contact that
            was heard is looked up again.
        """
        self.clock = clock
        self.server = server
        self.name = name
        self.wants = wants
        self.interval = interval
        self.text = protocol.directMessage(name, wants) if text is None else text
        self.application = Greeter(clock, self.text, messageInterval)
        self.contact = None
        self.drops = DropCounter(clock)
        self.lines = 0
        self._messageInterval = messageInterval
        self.pathTimeout = pathTimeout
        self._transactions = Transactions(clock, self._sendRegistration)
        self._refresher = LoopingCall(self.register)
        self._refresher.clock = clock
        self._unanswered = 0
        self._serverSilent = False

    def startProtocol(self):
        self.log.info(
            "Original test-server: {server}. My name: {name}, looking for {wants}."
            " Listening on port {port}, speaking the original's text protocol"
            " (--seed-compat).",
            server=formatAddress(self.server),
            name=self.name,
            wants=self.wants,
            port=self.transport.getHost().port,
        )
        self.register()

    def stopProtocol(self):
        self._transactions.withdrawAll()
        if self._refresher.running:
            self._refresher.stop()
        if self.contact is not None:
            self.contact.stop()
        self.application.stop()

    def leave(self):
        """
        Nothing to say: the original protocol has no way to leave.
        """

    @property
    def located(self) -> bool:
        """
        Whether the contact is found and being talked to.
        """
        return self.contact is not None and self.contact.state in (PUNCHING, UP)

    def register(self):
        """
        Register now: until the contact is found, again after 1, 2, 4, ...
        seconds, up to the refresh interval; once it is found, every
        interval.
        """
        datagram = protocol.encodeRegistration(self.name)
        if self.located:
            self._sendRegistration(datagram, self.server)
            return
        d = self._transactions.request(
            _LOOKUP, datagram, self.server, backoff(LOOKUP_RETRY, self.interval)
        )
        d.addErrback(lambda failure: failure.trap(CancelledError))

    def _sendRegistration(self, datagram, address):
        self.transport.write(datagram, address)
        self._unanswered += 1
        if self._unanswered == NOT_ANSWERING_AFTER and not self._serverSilent:
            self._serverSilent = True
            self.log.warn(
                "The original test-server at {server} is not answering: {count}"
                " registrations went unanswered. Is it running, and can UDP reach"
                " port {port} from here? Still trying.",
                server=formatAddress(self.server),
                count=self._unanswered,
                port=self.server[1],
            )

    def datagramReceived(self, datagram, address):
        if address == self.server:
            self._fromServer(datagram, address)
        elif self.contact is not None and protocol.isText(datagram):
            if not self.contact.handleText(datagram, address):
                self.drops.drop("text from an unknown address", formatAddress(address))
        else:
            self.drops.drop("not from the server or the contact", formatAddress(address))

    def _fromServer(self, datagram, address):
        if not protocol.isText(datagram):
            self.drops.drop(
                "STUN from the server",
                formatAddress(address),
                "it is a punch-server: run without --seed-compat",
            )
            return
        try:
            line = protocol.parseLine(datagram)
        except protocol.MalformedLine as e:
            self.drops.drop("malformed phonebook line", formatAddress(address), str(e))
            return
        self.lines += 1
        self._unanswered = 0
        if self._serverSilent:
            self._serverSilent = False
            self.log.info(
                "The original test-server at {server} is answering again",
                server=formatAddress(self.server),
            )
        self.log.debug("The server sent us a phonebook entry: {line}", line=str(line))
        if line.name == self.wants:
            self._located(line.address)

    def _located(self, address):
        if self.located and self.contact.address == address:
            return
        if self.contact is not None:
            self.contact.stop()
        self.log.info(
            "Located {wants} at {address} in the phonebook",
            wants=self.wants,
            address=formatAddress(address),
        )
        self.contact = OriginalContact(
            self.clock,
            self.transport.write,
            self.name,
            self.wants,
            address,
            self.text,
            self,
            messageInterval=self._messageInterval,
            pathTimeout=self.pathTimeout,
        )
        self.contact.start()
        self._transactions.answer(_LOOKUP)
        if self._refresher.running:
            self._refresher.stop()
        self._refresher.start(self.interval, now=False)

    # What the contact tells us

    def pathUp(self, path):
        self.application.pathUp(path)

    def pathMoved(self, path, previous):
        self.application.pathMoved(path, previous)

    def punchFailed(self, path):
        self.application.punchFailed(path)

    def dataReceived(self, path, data, source):
        self.application.dataReceived(path, data, source)

    def pathLost(self, contact):
        self.log.warn(
            "{wants} at {address} fell silent: nothing heard for {seconds:.0f} s."
            " Looking it up again.",
            wants=contact.peerName,
            address=formatAddress(contact.address),
            seconds=self.clock.seconds() - contact.lastHeard,
        )
        self.application.pathLost(contact)
        if self._refresher.running:
            self._refresher.stop()
        self.register()
