"""
The peer: registers with the stage manager, and punches and keeps a direct
path to each of its contacts as it is introduced to them, for an
application on each path.

L{PeerProtocol} is the socket's protocol and wires the jobs together: the
registration (L{punchd.registration}), the NAT probe (L{punchd.natprobe}),
the path to each contact (L{punchd.punching}), and the application on it
(by default L{punchd.greeter}, the original's direct message).  Other
protocols on the same socket plug in as L{punchd.interfaces.IPeerDialect}s.
"""

import random as _random
import secrets
from ipaddress import ip_address

from twisted.internet.address import IPv6Address
from twisted.internet.defer import CancelledError
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from punchd import frames, hardnat, identity, messages, stun
from punchd.addresses import formatAddress, unmapped, unusableReason
from punchd.drops import DropCounter
from punchd.greeter import Greeter, defaultMessage
from punchd.interfaces import IPathObserver, IPathReceiver, IPeer
from punchd.natprobe import (
    ADDRESS_AND_PORT_DEPENDENT,
    ENDPOINT_INDEPENDENT,
    NATProbe,
    ProbeError,
)
from punchd.hardnat import SideSource
from punchd.portmap import PortMapper
from punchd.punching import FAILED, LOST, MAPPED, PUBLIC, PUNCHING, RELAYED, UP, Punch
from punchd.registration import Registrar, SecondFamily
from punchd.relaying import Relay, RelayedSource, directImpossible
from punchd.transactions import Transactions, TransactionTimeout


class Contact:
    """
    One of a peer's contacts: its name, the name it registers under, the
    path to it and the application on that path.

    @ivar name: The contact's name.
    @ivar wireName: The name the stage manager knows it by: C{name}, or the
        name derived from a peer secret (see L{punchd.identity}).
    @ivar path: The current L{punchd.interfaces.IPath} to it, or L{None}
        before the first introduction.
    @ivar application: The L{punchd.interfaces.IPathObserver} and
        L{punchd.interfaces.IPathReceiver} on its paths.
    """

    __slots__ = ("name", "wireName", "path", "application")

    def __init__(self, name: str, wireName: str, application):
        self.name = name
        self.wireName = wireName
        self.path = None
        self.application = application

    @property
    def seeking(self) -> bool:
        """
        Whether the peer wants an introduction to this contact: it has no
        path to it and is not punching one.
        """
        return self.path is None or self.path.state in (FAILED, LOST)


@implementer(IPeer, IPathObserver, IPathReceiver)
class PeerProtocol(DatagramProtocol):
    """
    A peer.

    It registers with the stage manager at start and every C{interval}
    seconds, naming its contacts.  When the stage manager introduces one,
    it starts a L{punchd.punching.Punch} to it; its registrations ask for
    an introduction to each contact it has no path to and is not punching.
    What happens to each path, and what comes over it, goes to that
    contact's application.  One socket carries the paths to all contacts.

    @ivar wants: The contacts' names, a L{tuple}.
    @ivar contacts: L{Contact}s by name.
    @ivar registrar: The L{Registrar}, from the start of the protocol.
    @ivar drops: The L{DropCounter} of datagrams dropped, by reason.
    @ivar receivers: The paths that take frames (L{punchd.frames}), by
        their receiver index.
    """

    noisy = False
    log = Logger()

    def __init__(
        self,
        clock,
        server,
        name: str,
        wants,
        localHosts=(),
        interval: float = 20.0,
        text: "str | None" = None,
        newTransactionID=stun.newTransactionID,
        discoverNAT: bool = True,
        key: "bytes | None" = None,
        peerSecret: "bytes | None" = None,
        dialects=(),
        application=None,
        applications=None,
        messageInterval: float = 1.0,
        fallbacks=(),
        randbits=secrets.randbits,
        listenUDP=None,
        hardSockets: int = hardnat.SOCKETS,
        scanBudget: int = hardnat.BUDGET,
        scanRate: float = hardnat.RATE,
        random=None,
        portMapping=None,
        secondServer=None,
        **punchSettings,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param server: The stage manager's C{(host, port)}, resolved.
        @param name: This peer's name.
        @param wants: The name of the contact to reach, or a sequence of
            them (at most L{messages.MAX_CONTACTS}).
        @param localHosts: This machine's addresses on its own network; the
            peer reports them with its port as local candidates.
        @param interval: Seconds between registrations.
        @param text: Without an application, the direct message the
            L{Greeter} of each contact sends; by default the original's.
        @param discoverNAT: Whether to find out at start how the NAT in
            front of this peer behaves, when the stage manager offers NAT
            behaviour discovery, and log the verdict.
        @param key: With a shared secret, the key of the
            C{MESSAGE-INTEGRITY-SHA256} that every datagram to and from the
            stage manager carries; L{None} without.
        @param peerSecret: A secret shared out of band with the contacts:
            the names registered and the punch keys are derived from it
            (see L{punchd.identity}); L{None} without.
        @param dialects: The L{punchd.interfaces.IPeerDialect}s spoken on
            the socket besides punchd's own protocol.
        @param application: What runs on the path of a peer with one
            contact.
        @param applications: What runs on the path to each contact: a
            mapping of contact names to applications.  A contact without
            one gets a L{Greeter} of C{text} every C{messageInterval}
            seconds.
        @param fallbacks: The C{(host, port)}s of more stage managers, to
            register with in turn when the one registered with stops
            answering.
        @param randbits: A function of a number of bits that returns that
            many random bits, for the receiver indices of paths.
        @param listenUDP: The C{listenUDP} of an
            L{twisted.internet.interfaces.IReactorUDP}, for the extra
            sockets of a many-port punch (L{punchd.hardnat}); L{None}, and
            this peer does not open them.
        @param hardSockets: How many sockets this peer opens when its NAT
            maps per destination and the contact's does not.
        @param scanBudget: How many ports of the contact's public IP it
            probes when the contact's NAT maps per destination and its own
            does not.
        @param scanRate: Probes a second of either.
        @param random: A L{random.Random}, for the jitter of registrations
            and the ports to probe; by default the system's.
        @param portMapping: C{(gateway, clientHost)}: ask the router at
            C{gateway} for a port mapping with PCP or NAT-PMP
            (L{punchd.portmap}), C{clientHost} being our address on its
            network, and offer the mapped address to every contact; L{None}
            not to.
        @param secondServer: The stage manager's C{(host, port)} of the
            other family than C{server}'s, for a dual-stack peer: its socket
            is bound to C{::}, taking both families (see L{dualStack}), and
            it registers its address of that family there too
            (L{SecondFamily}); L{None} for a peer of one family.
        @param punchSettings: Keyword arguments for each L{Punch}: its
            timeouts and intervals.
        @raise ValueError: If C{wants} is empty, too long, repeats a name
            or names this peer, or an application is given for a name that
            is not a contact.
        """
        wants = (wants,) if isinstance(wants, str) else tuple(wants)
        if not wants or len(wants) > messages.MAX_CONTACTS:
            raise ValueError(f"from 1 to {messages.MAX_CONTACTS} contacts, not {len(wants)}")
        if len(set(wants)) != len(wants) or name in wants:
            raise ValueError(f"contacts must be distinct and not this peer: {', '.join(wants)}")
        applications = dict(applications or {})
        if application is not None:
            if len(wants) != 1:
                raise ValueError("one application for several contacts: give applications")
            applications[wants[0]] = application
        unknown = set(applications) - set(wants)
        if unknown:
            raise ValueError(f"applications for names that are not contacts: {', '.join(unknown)}")
        self.clock = clock
        self._server = server
        self._fallbacks = tuple(fallbacks)
        self.name = name
        self.wants = wants
        self.interval = interval
        self.receivers = {}
        self._randbits = randbits
        self.registrar = None
        self.drops = DropCounter(clock)
        self.dialects = tuple(dialects)
        self._localHosts = tuple(localHosts)
        self._newTransactionID = newTransactionID
        self._punchSettings = punchSettings
        self._ipv6 = False
        self._secondServer = secondServer
        self._portWrite = None
        #: The L{SecondFamily} registration of a dual-stack peer, or
        #: L{None}.
        self.secondFamily = None
        self._key = key
        self._peerSecret = peerSecret
        if peerSecret is None:
            self._wireName = name
        else:
            self._wireName = identity.derivedName(peerSecret, name)
        self.contacts = {}
        self._byWireName = {}
        for wanted in wants:
            app = applications.get(wanted)
            if app is None:
                app = Greeter(
                    clock,
                    defaultMessage(name, wanted) if text is None else text,
                    messageInterval,
                )
            wire = wanted if peerSecret is None else identity.derivedName(peerSecret, wanted)
            self.contacts[wanted] = self._byWireName[wire] = Contact(wanted, wire, app)
        self._discoverNAT = discoverNAT
        self.natProbe = None
        self.natBehaviour = None
        #: How this peer's NAT maps, as the ports seen for it said, without
        #: a NAT probe's verdict (see L{_portsSeen}).
        self._natSeen = None
        #: The L{Relay} on the stage manager's TURN server, once an
        #: introduction offered one.
        self.relay = None
        self._candidates = Transactions(clock, lambda datagram, address: self._toServer(datagram))
        self._listenUDP = listenUDP
        self._hardSockets = hardSockets
        self._scanBudget = scanBudget
        self._scanRate = scanRate
        self._random = _random.SystemRandom() if random is None else random
        #: The extra sockets of many-port punches, by number, and the
        #: numbers of each contact's.
        self.sideSockets = {}
        self._sides = {}
        self._nextSide = 0
        self._portMapping = portMapping
        #: The L{PortMapper}, from the start of the protocol when asked for.
        self.portMapper = None

    @property
    def server(self):
        """
        The C{(host, port)} of the stage manager registered with: the first
        one given, until it stops answering and the peer moves to another.
        """
        return self._server if self.registrar is None else self.registrar.server

    @property
    def punch(self):
        """
        The current path to the first contact, or L{None}: of a peer with
        one contact, its path.
        """
        return self.contacts[self.wants[0]].path

    @property
    def application(self):
        """
        The application on the first contact's paths: of a peer with one
        contact, its application.
        """
        return self.contacts[self.wants[0]].application

    @property
    def publicAddress(self):
        """
        This peer's address as the stage manager saw it, or L{None} before
        the first answer.
        """
        return None if self.registrar is None else self.registrar.publicAddress

    def startProtocol(self):
        host = self.transport.getHost()
        self._portWrite = self.transport.write
        self._ipv6 = isinstance(host, IPv6Address)
        if self.dualStack and not self._ipv6:
            raise ValueError("a dual-stack peer listens on ::, not on an IPv4 address")
        self.localAddresses = tuple((h, host.port) for h in self._localHosts)
        self.log.info(
            "Stage manager: {server}. My name: {name}, looking for {wants}."
            " Listening on port {port}.",
            server=", then ".join(map(formatAddress, (self._server, *self._fallbacks))),
            name=self.name,
            wants=", ".join(self.wants),
            port=host.port,
        )
        if self._peerSecret is None:
            self.log.info(
                "The identity of {wants} is not verified: anyone who registers"
                " the name {wants} first could pass for it. Share a secret with"
                " it (--peer-secret-file) to verify it.",
                wants=", ".join(self.wants),
            )
        else:
            self.log.info(
                "The identity of {wants} is verified by the shared secret",
                wants=", ".join(self.wants),
            )
        self.registrar = Registrar(
            self.clock,
            self._toServer,
            self._server,
            self._wireName,
            tuple(contact.wireName for contact in self.contacts.values()),
            self.localAddresses,
            host.port,
            lambda: self.seeking,
            self.interval,
            self._newTransactionID,
            clearNames=(self.name, self.wants),
            fallbacks=self._fallbacks,
            random=self._random.random,
        )
        if self.dualStack:
            self.secondFamily = SecondFamily(
                self.clock,
                self._toServer,
                self._secondServer,
                self.registrar,
                self.interval,
                self._newTransactionID,
                random=self._random.random,
            )
        for dialect in self.dialects:
            dialect.attach(self)
        self.registrar.start()
        if self.secondFamily is not None:
            self.secondFamily.start()
        if self._discoverNAT:
            self._startNATProbe(host.port)
        if self._portMapping is not None:
            gateway, clientHost = self._portMapping
            self.portMapper = PortMapper(
                self.clock,
                self._write,
                gateway,
                clientHost,
                host.port,
                self._mappingChanged,
                self.drops,
                random=self._random.random,
            )
            self.portMapper.start()

    def _startNATProbe(self, port):
        self.natProbe = NATProbe(
            self.clock, self._probeSend, self.server, port, self._localHosts, drops=self.drops
        )
        d = self.natProbe.run()

        def unknown(failure):
            failure.trap(ProbeError)
            self.log.info(
                "My NAT's behaviour is unknown: {reason}", reason=failure.getErrorMessage()
            )

        d.addCallbacks(self._natFound, unknown)
        d.addBoth(lambda _: setattr(self, "natProbe", None))

    def _natFound(self, behaviour):
        """
        The NAT probe found how this peer's NAT behaves.
        """
        self.natBehaviour = behaviour
        self.log.info("My NAT: {verdict}", verdict=behaviour.verdict())
        # Registrations from now on carry it, for the introductions to
        # come.  The contacts introduced already learn it now, with the
        # relayed address if there is one; a contact's may have come first.
        self.registrar.setNAT(self._natPair())
        for contact in self.contacts.values():
            punch = contact.path
            if isinstance(punch, Punch) and punch.state in (PUNCHING, UP):
                self._announce(contact, punch, self._relayed())
                self._manyPorts(contact, punch)

    def _probeSend(self, datagram, address):
        if address == self.server:
            self._toServer(datagram)
        else:
            self._write(datagram, address)

    def stopProtocol(self):
        self.registrar.stop()
        if self.secondFamily is not None:
            self.secondFamily.stop()
        if self.portMapper is not None:
            self.portMapper.stop()
        self._candidates.withdrawAll()
        if self.relay is not None:
            self.relay.stop()
        if self.natProbe is not None:
            self.natProbe.cancel()
        for contact in self.contacts.values():
            if contact.path is not None:
                contact.path.stop()
            self._closeSides(contact.name)
            # An application need be no more than IPathObserver and
            # IPathReceiver say; one with timers of its own, as the
            # Greeter has, stops them here.
            stop = getattr(contact.application, "stop", None)
            if stop is not None:
                stop()

    def leave(self):
        """
        Tell the stage manager to forget this peer, if it registered.

        Fire and forget: a lost goodbye only means the entry expires.
        """
        if self.registrar is not None:
            self.registrar.leave()
        if self.relay is not None:
            # Deallocate while the socket is open.
            self.relay.stop()
        if self.portMapper is not None:
            self.portMapper.stop()

    def register(self, seeking: "tuple | None" = None):
        """
        Register now; see L{Registrar.register}.
        """
        self.registrar.register(seeking)

    @property
    def seeking(self) -> tuple:
        """
        The names the stage manager knows the contacts by that this peer
        wants an introduction to: those it has no path to and is not
        punching one.
        """
        return tuple(c.wireName for c in self.contacts.values() if c.seeking)

    def _toServer(self, datagram, server=None):
        """
        Send a datagram to the stage manager (C{server}, or the one
        registered with), signed with the shared secret if there is one.
        """
        if self._key is not None:
            datagram = stun.addIntegritySHA256(datagram, self._key)
        self._write(datagram, self.server if server is None else server)

    # What dialects use

    def send(self, datagram: bytes, address):
        """
        Send a datagram from the peer's socket.
        """
        self._write(datagram, address)

    @property
    def dualStack(self) -> bool:
        """
        Whether this peer speaks both families from its one socket, bound
        to C{::}: an IPv4 address is written in its IPv4-mapped form, and
        a datagram from one is read as from the IPv4 address, so that
        inside the peer an IPv4 address always has its plain form.
        """
        return self._secondServer is not None

    def _write(self, datagram: bytes, address):
        if self._secondServer is not None and ":" not in address[0]:
            address = ("::ffff:" + address[0], address[1])
        # The port's own write, kept from the start: what stops with the
        # protocol (a TURN deallocation) still sends through it.
        self._portWrite(datagram, address)

    def _canSend(self, address) -> bool:
        """
        Whether the socket can send to C{address}'s family.
        """
        return self.dualStack or (":" in address[0]) == self._ipv6

    def _unusable(self, address, own):
        """
        Why C{address} is not one to send to (L{unusableReason}), for the
        socket's family or families.
        """
        return unusableReason(address, (":" in address[0]) if self.dualStack else self._ipv6, own)

    def adopt(self, path):
        """
        Make C{path} the path to the contact it names, stopping the one
        there was, and start it.
        """
        contact = self.contacts[path.peerName]
        previous = contact.path
        if previous is not None:
            previous.stop()
            self._closeSides(contact.name)
            self.receivers = {i: p for i, p in self.receivers.items() if p is not previous}
        contact.path = path
        path.start()

    def pathTo(self, name: str):
        """
        The current path to the contact C{name}, or L{None}.
        """
        contact = self.contacts.get(name)
        return None if contact is None else contact.path

    # Datagrams

    def datagramReceived(self, datagram, address):
        if self._secondServer is not None:
            address = unmapped(address)
        if self.relay is not None and self.relay.handle(datagram, address):
            return
        if self.portMapper is not None and self.portMapper.handle(datagram, address):
            return
        if frames.isFrame(datagram):
            self._frameReceived(datagram, address)
            return
        for dialect in self.dialects:
            if dialect.datagramReceived(datagram, address):
                return
        if (
            self._key is not None
            and (address == self.server or address == self._secondServer)
            and not stun.verifyIntegritySHA256(datagram, self._key)
        ):
            self.drops.drop(
                "unauthenticated", formatAddress(address), "no valid MESSAGE-INTEGRITY-SHA256"
            )
            return
        try:
            message = stun.decode(datagram)
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(address), str(e))
            return
        if self.natProbe is not None and self.natProbe.handle(message, address):
            return
        try:
            if address == self.server and self._fromServer(datagram, message):
                return
            if address == self._secondServer and self.secondFamily.handle(message):
                return
            for contact in self.contacts.values():
                path = contact.path
                if path is not None and path.handle(datagram, message, address):
                    self._portsSeen(contact, path, message, address)
                    return
        except messages.InvalidMessage as e:
            self.drops.drop("invalid", formatAddress(address), e.reason)
            return
        self.drops.drop(
            "unexpected or unauthenticated",
            formatAddress(address),
            f"method {message.method:#05x} class {message.messageClass}",
        )

    def _frameReceived(self, datagram, address):
        try:
            path = self.receivers.get(frames.receiverIndex(datagram))
            if path is None or not path.frameReceived(datagram, address):
                self.drops.drop(frames.UNKNOWN_INDEX, formatAddress(address))
        except frames.FrameError as e:
            self.drops.drop(e.reason, formatAddress(address), e.detail)

    def _fromServer(self, datagram, message):
        if (message.method, message.messageClass) == (messages.INTRODUCE, stun.REQUEST):
            if not self._fromStageManager(datagram, "introduction"):
                return True
            self._toServer(messages.encodeSuccess(messages.INTRODUCE, message.transactionID))
            if not any(dialect.introduced(message) for dialect in self.dialects):
                self._introduced(messages.parseIntroduction(message))
            return True
        if message.method == messages.CANDIDATE:
            return self._candidateFromServer(datagram, message)
        if not self.registrar.handle(message):
            return False
        if self.secondFamily is not None:
            self.secondFamily.registered()
        return True

    def _ownAddresses(self):
        own = set(self.localAddresses)
        if self.publicAddress is not None:
            own.add(self.publicAddress)
        if self.secondFamily is not None and self.secondFamily.publicAddress is not None:
            own.add(self.secondFamily.publicAddress)
        return own

    def _usableLocally(self, introduction, own):
        """
        The introduced peer's local addresses that this peer can send to:
        those of its socket's family, but for any it must not send to,
        which are counted; and none at all unless the peer is behind this
        peer's own public address.

        A local address is reachable only from inside the network it is
        on, whose NAT is the one the stage manager saw both peers come
        from.  Anyone can register with a list of local addresses, and
        the signed introduction brings them here as they were listed: a
        contact elsewhere that lists other people's addresses would make
        this peer probe them, at each introduction it asks for.
        """
        public = self.publicAddress
        if public is None or unmapped(introduction.address)[0] != unmapped(public)[0]:
            return ()
        usable = []
        for local in introduction.localAddresses:
            if not self._canSend(local):
                # A peer of both families lists both: not a fault.
                continue
            why = self._unusable(local, own)
            if why is None and ip_address(unmapped(local)[0]).is_global:
                why = "a global address listed as a local one"
            if why is None:
                usable.append(local)
            else:
                self.drops.drop(
                    "unusable local address",
                    formatAddress(self.server),
                    f"{introduction.name}'s {formatAddress(local)}: {why}",
                )
        return tuple(usable)

    def _usableOther(self, contact, address, own):
        """
        The introduced peer's public address of its other family, if this
        peer's socket can send to it; one it cannot is left out, counted,
        and one it must not send to counted as such.
        """
        if address is None:
            return None
        if not self._canSend(address):
            self.drops.drop("other family, no socket", formatAddress(self.server), contact.name)
            return None
        why = self._unusable(address, own)
        if why is not None:
            self.drops.drop(
                why,
                formatAddress(self.server),
                f"introduction of {contact.name}, also at {formatAddress(address)}",
            )
            return None
        return address

    def _introduced(self, introduction):
        contact = self._byWireName.get(introduction.name)
        if contact is None:
            raise messages.InvalidMessage(
                f"introduced to {introduction.name}, who is not a contact"
            )
        key = introduction.key
        if self._peerSecret is not None:
            key = identity.punchKey(self._peerSecret, key)
        if isinstance(contact.path, Punch) and contact.path.key == key:
            # A retransmission of the introduction being acted on.
            return
        own = self._ownAddresses()
        why = self._unusable(introduction.address, own)
        if why is not None:
            self.drops.drop(
                why,
                formatAddress(self.server),
                f"introduction of {contact.name} at {formatAddress(introduction.address)}",
            )
            return
        usable = messages.Introduction(
            contact.name,
            introduction.address,
            self._usableLocally(introduction, own),
            key,
            otherAddress=self._usableOther(contact, introduction.otherAddress, own),
        )
        self.log.info(
            "The stage manager introduced {peer}: public address {address},"
            " local addresses {localAddresses}. Punching.",
            peer=contact.name,
            address=formatAddress(introduction.address)
            + ("" if usable.otherAddress is None else f" and {formatAddress(usable.otherAddress)}"),
            localAddresses=", ".join(map(formatAddress, usable.localAddresses))
            or ("none" if not introduction.localAddresses else "none on our network"),
        )
        index = frames.freeIndex(self.receivers, self._randbits)
        punch = Punch(
            self.clock,
            self._sendOnPath,
            self.name,
            usable,
            self,
            newTransactionID=self._newTransactionID,
            wireNames=(self._wireName, contact.wireName),
            index=index,
            **self._punchSettings,
        )
        self.adopt(punch)
        self.receivers[index] = punch
        if introduction.natDropped is not None:
            self.drops.drop(
                "unknown NAT behaviour", formatAddress(self.server), introduction.natDropped
            )
        if self._natPair() is not None and self.registrar.natRegistered != self._natPair():
            # Found since the stage manager last heard from us: the
            # introduction it sent the contact did not carry it.
            self._announce(contact, punch, None)
        if introduction.turn is not None:
            self._offerRelay(contact, punch, introduction)
        if self.portMapper is not None and self.portMapper.mapping is not None:
            self._announce(contact, punch, self.portMapper.mapping.external, mapped=True)
        if introduction.nat is not None:
            self._peerNATLearned(contact, punch, introduction.nat)

    # Relaying (punchd.relaying)

    def _sendOnPath(self, datagram, address):
        """
        Send a path's datagram: through the relay to a source that came
        through it, from the socket to any other address.
        """
        if isinstance(address, RelayedSource):
            if self.relay is not None and self.relay.server == address.relay:
                self.relay.sendTo(datagram, address)
            return
        if isinstance(address, SideSource):
            port = self.sideSockets.get(address.socket)
            if port is not None:
                port.write(datagram, address.peer)
            return
        self._write(datagram, address)

    def _offerRelay(self, contact, punch, introduction):
        """
        Allocate on the introduction's TURN server (once for every
        contact), let the contact's public IP in, and send it the relayed
        address through the stage manager.
        """
        credentials = introduction.turn
        punch.relayServer = credentials.server
        relay = self.relay
        if relay is None or not relay.usable or relay.server != credentials.server:
            if relay is not None:
                relay.stop()
            relay = self.relay = Relay(
                self.clock, self._write, credentials, self._throughRelay
            )
            relay.start()

        def allocated(relayed):
            if contact.path is not punch or punch.state not in (PUNCHING, UP):
                return
            # Announced without waiting for the permission, a round trip
            # saved: the contact's first probe comes only after the
            # candidate has been through the stage manager, most often
            # later than the permission, and it probes again if not.
            relay.permit(introduction.address[0]).addErrback(self._notPermitted, contact)
            self._announce(contact, punch, relayed)

        relay.whenAllocated(allocated)

    def _notPermitted(self, failure, contact):
        self.log.warn(
            "The TURN server refused to let {peer} in: {why}. Going on with direct"
            " candidates only.",
            peer=contact.name,
            why=failure.getErrorMessage(),
        )

    def _natPair(self):
        behaviour = self.natBehaviour
        if behaviour is None or not behaviour.behindNAT:
            return None
        return (behaviour.mapping, behaviour.filtering)

    def _mappingChanged(self, mapping):
        """
        The router granted a port mapping, or it moved: every contact
        punching or with a path gets the new address, and for those whose
        punch has failed we register at once, asking for the introduction
        that will carry it, rather than waiting for the next interval.  A
        lost one is simply not offered again.
        """
        if mapping is None:
            return
        for contact in self.contacts.values():
            if isinstance(contact.path, Punch):
                self._announce(contact, contact.path, mapping.external, mapped=True)
        if self.seeking and self.registrar.secret is not None:
            self.register()

    def _relayed(self):
        if self.relay is None:
            return None
        return self.relay.relayed

    def _announce(self, contact, punch, relayed, mapped=False):
        """
        Send the contact, through the stage manager, our relayed address
        (or with C{mapped} our port mapping) and our NAT's behaviour, those
        of them we have (L{None} for no address).
        """
        if contact.path is not punch or punch.state not in (PUNCHING, UP):
            return
        secret = self.registrar.secret
        if secret is None or (relayed is None and self._natPair() is None):
            return
        txid = self._newTransactionID()
        datagram = messages.encodeCandidate(
            txid,
            messages.RelayCandidate(
                self._wireName, relayed, contact.wireName, self._natPair(), mapped
            ),
            messages.introductionKey(secret),
        )
        d = self._candidates.request(txid, datagram, self.server, (0.5, 1.0, 2.0, 4.0))
        d.addErrback(lambda f: f.trap(TransactionTimeout, CancelledError))

    def _fromStageManager(self, datagram, what: str) -> bool:
        """
        Whether a request from the stage manager's address is the stage
        manager's: signed with the L{messages.introductionKey} of one of
        our name's secrets.  Anyone can send from that address; only the
        stage manager knows the secret.  One that is not is dropped and
        counted as an "unauthenticated C{what}", and not even
        acknowledged, so a forger learns nothing.
        """
        if any(
            stun.verifyIntegrity(datagram, messages.introductionKey(secret))
            for secret in self.registrar.secrets
        ):
            return True
        self.drops.drop(
            f"unauthenticated {what}",
            formatAddress(self.server),
            "no MESSAGE-INTEGRITY keyed with our name's secret",
        )
        return False

    def _candidateFromServer(self, datagram, message):
        if message.messageClass == stun.SUCCESS:
            return self._candidates.answer(message.transactionID)
        if message.messageClass != stun.REQUEST:
            return False
        if not self._fromStageManager(datagram, "candidate"):
            return True
        self._toServer(messages.encodeSuccess(messages.CANDIDATE, message.transactionID))
        candidate = messages.parseCandidate(message)
        contact = self._byWireName.get(candidate.name)
        if contact is None:
            raise messages.InvalidMessage(f"a candidate of {candidate.name}, who is not a contact")
        punch = contact.path
        if not isinstance(punch, Punch) or punch.state not in (PUNCHING, UP):
            return True
        if candidate.natDropped is not None:
            self.drops.drop(
                "unknown NAT behaviour", formatAddress(self.server), candidate.natDropped
            )
        if candidate.nat is not None:
            self._peerNATLearned(contact, punch, candidate.nat)
        if candidate.address is None:
            return True
        if candidate.other:
            address = self._usableOther(contact, candidate.address, self._ownAddresses())
            if address is not None and all(c.address != address for c in punch.candidates):
                punch.addCandidate(address, PUBLIC)
                self.log.info(
                    "{peer} is also at {address}: probing it",
                    peer=contact.name,
                    address=formatAddress(address),
                )
            return True
        why = self._unusable(candidate.address, self._ownAddresses())
        if why is not None:
            self.drops.drop(
                why, formatAddress(self.server), f"{candidate.kind} candidate of {contact.name}"
            )
            return True
        if any(c.address == candidate.address for c in punch.candidates):
            # A retransmission, or the same address again with the NAT's
            # behaviour, found since.
            return True
        if candidate.mapped:
            punch.addCandidate(candidate.address, MAPPED)
            self.log.info(
                "{peer}'s router maps {address} to it: probing it",
                peer=contact.name,
                address=formatAddress(candidate.address),
            )
            return True
        punch.addCandidate(candidate.address, RELAYED)
        impossible = directImpossible(self._natPair(), punch.peerNAT)
        if impossible is not None:
            punch.relayAtOnce(impossible)
        self.log.info(
            "{peer}'s relayed address is {address}{when}",
            peer=contact.name,
            address=formatAddress(candidate.address),
            when=f": {impossible}, so the relay is tried at once" if impossible else "",
        )
        return True

    def _peerNATLearned(self, contact, punch, nat):
        """
        The contact's NAT behaves as C{nat}: punch many ports if that, and
        ours, call for it.
        """
        if nat == punch.peerNAT:
            return
        punch.peerNAT = nat
        self._manyPorts(contact, punch)

    def _throughRelay(self, datagram, source):
        """
        A datagram that came through our relay from C{source}, a
        L{RelayedSource}: for a path.
        """
        self._toPaths(datagram, source, "through the relay")

    def _toPaths(self, datagram, source, via):
        """
        A datagram that can only be for a path: it came through our relay
        or to one of the extra sockets, C{via}.
        """
        if frames.isFrame(datagram):
            self._frameReceived(datagram, source)
            return
        try:
            message = stun.decode(datagram)
            for contact in self.contacts.values():
                path = contact.path
                if path is not None and path.handle(datagram, message, source):
                    self._portsSeen(contact, path, message, source)
                    return
        except stun.StunError as e:
            self.drops.drop("malformed", formatAddress(source), str(e))
            return
        except messages.InvalidMessage as e:
            self.drops.drop("invalid", formatAddress(source), e.reason)
            return
        self.drops.drop(
            "unexpected or unauthenticated",
            formatAddress(source),
            f"{via}: method {message.method:#05x} class {message.messageClass}",
        )

    # Many ports at once (punchd.hardnat)

    def _portsSeen(self, contact, punch, message, source):
        """
        An authenticated probe or answer of the contact's came from
        C{source} (directly, through our relay or to an extra socket): where
        no NAT probe said how a NAT maps, the ports seen say it.

        A probe or answer from the contact's public IP, but another port
        than the stage manager saw, says that its NAT maps per destination;
        from the same port, that it keeps one mapping.  The address an
        answer says our probe came from says the same of our NAT, against
        our public address.  Nothing is said of filtering: the strictest,
        address and port dependent, is assumed.
        """
        if not isinstance(punch, Punch):
            return
        learned = False
        if punch.peerNAT is None:
            seen, introduced = unmapped(source[:2]), unmapped(punch.introducedAddress)
            if seen[0] == introduced[0]:
                self._peerNATLearned(contact, punch, _mappingSeen(seen[1] != introduced[1]))
                self.log.info(
                    "{peer} came from port {port}, the stage manager saw {introduced}: its NAT {how}",
                    peer=contact.name,
                    port=seen[1],
                    introduced=formatAddress(introduced),
                    how=_MAPPINGS[punch.peerNAT[0]],
                )
        public = self.publicAddress
        value = message.get(stun.XOR_MAPPED_ADDRESS)
        if self._natPair() is None and self._natSeen is None and public and value:
            observed = unmapped(messages.readAddress(value, message.transactionID, "XOR-MAPPED-ADDRESS"))
            public = unmapped(public)
            if observed[0] == public[0]:
                self._natSeen = _mappingSeen(observed[1] != public[1])
                learned = True
                self.log.info(
                    "{peer} saw my probe come from {observed}, the stage manager saw {public}:"
                    " my NAT {how}",
                    peer=contact.name,
                    observed=formatAddress(observed),
                    public=formatAddress(public),
                    how=_MAPPINGS[self._natSeen[0]],
                )
        if learned:
            self._manyPorts(contact, punch)

    def _manyPorts(self, contact, punch):
        """
        Start a many-port punch to the contact, if one NAT maps per
        destination and the other does not: as the NAT probes found, or
        else as the ports seen say (L{_portsSeen}).
        """
        role = hardnat.role(self._natPair() or self._natSeen, punch.peerNAT)
        if role is None or punch.scanning or punch.scanProbesSent or punch.kind not in (None, RELAYED):
            return
        host = punch.scanHost
        public = punch.introducedAddress
        if role == hardnat.EASY:
            ports = hardnat.portsToProbe(public[1], self._scanBudget, self._random)
            self.log.info(
                "{peer}'s NAT maps per destination: probing {count} ports of {host},"
                " {rate:.0f} a second, from our one socket",
                peer=contact.name,
                count=len(ports),
                host=host,
                rate=self._scanRate,
            )
            punch.scanPorts(ports, self._scanRate)
            return
        if self._listenUDP is None:
            return
        numbers = self._openSides(contact.name)
        if not numbers:
            return
        self.log.info(
            "My NAT maps per destination and {peer}'s does not: probing"
            " {address} from {count} sockets, {rate:.0f} a second",
            peer=contact.name,
            address=formatAddress(public),
            count=len(numbers),
            rate=self._scanRate,
        )
        punch.probeFrom(
            [SideSource(public, n) for n in numbers],
            self._scanRate,
            # As long as the contact probes our ports, and a second more.
            self._scanBudget / self._scanRate + 1.0,
            lambda winner: self._scanEnded(contact.name, winner),
        )

    def _openSides(self, name):
        numbers = self._sides.setdefault(name, [])
        for _ in range(self._hardSockets):
            n = self._nextSide
            self._nextSide += 1
            try:
                port = self._listenUDP(0, _SideProtocol(self, n))
            except CannotListenError as e:
                self.log.warn(
                    "Opened only {count} sockets for a many-port punch to {peer}: {why}",
                    count=len(numbers),
                    peer=name,
                    why=str(e),
                )
                break
            self.sideSockets[n] = port
            numbers.append(n)
        return list(numbers)

    def _scanEnded(self, name, winner):
        keep = None if winner is None else winner.socket
        self._closeSides(name, keep)

    def _closeSides(self, name, keep=None):
        """
        Close the contact's extra sockets, all but C{keep}'s.
        """
        numbers = self._sides.pop(name, [])
        for n in numbers:
            if n == keep:
                self._sides[name] = [n]
                continue
            port = self.sideSockets.pop(n, None)
            if port is not None:
                port.stopListening()

    def _fromSide(self, n, datagram, address):
        self._toPaths(datagram, SideSource(address, n), f"to socket {n}")

    # What the path tells us

    def pathUp(self, path):
        self.contacts[path.peerName].application.pathUp(path)

    def pathMoved(self, path, previous):
        self.contacts[path.peerName].application.pathMoved(path, previous)

    def punchFailed(self, path):
        self._closeSides(path.peerName)
        self.log.warn(
            "Could not reach {peer}: none of its addresses ({candidates}) answered"
            " within {seconds:.1f} s, after {probes} probe(s). Both NATs may filter"
            " what the other sends, or give a new port per destination (a"
            " symmetric NAT). Trying again at the next introduction.",
            peer=path.peerName,
            candidates=", ".join(map(repr, path.candidates)),
            seconds=path.elapsed,
            probes=path.probesSent,
        )
        self.contacts[path.peerName].application.punchFailed(path)

    def pathLost(self, path):
        self.log.warn(
            "Lost the direct path to {peer} at {address}: nothing heard for"
            " {seconds:.0f} s. Asking the stage manager for a new introduction.",
            peer=path.peerName,
            address=formatAddress(path.selected.address),
            seconds=self.clock.seconds() - path.lastHeard,
        )
        self._closeSides(path.peerName)
        self.contacts[path.peerName].application.pathLost(path)
        self.register()

    def dataReceived(self, path, data, source):
        self.contacts[path.peerName].application.dataReceived(path, data, source)


_MAPPINGS = {
    ENDPOINT_INDEPENDENT: "keeps one mapping",
    ADDRESS_AND_PORT_DEPENDENT: "maps per destination",
}


def _mappingSeen(perDestination: bool) -> tuple:
    """
    A NAT's C{(mapping, filtering)} as the ports seen for it say: mapping
    per destination or not, filtering by address and port, the strictest.
    """
    mapping = ADDRESS_AND_PORT_DEPENDENT if perDestination else ENDPOINT_INDEPENDENT
    return (mapping, ADDRESS_AND_PORT_DEPENDENT)


class _SideProtocol(DatagramProtocol):
    """
    One of a peer's extra sockets for a many-port punch: what comes to it
    goes to the peer's paths.
    """

    noisy = False

    def __init__(self, peer, number):
        self._peer = peer
        self._number = number

    def datagramReceived(self, datagram, address):
        self._peer._fromSide(self._number, datagram, address)
