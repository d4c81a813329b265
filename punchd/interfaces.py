"""
The seams of punchd, as L{zope.interface} interfaces.

  - L{IPath}: a path to a contact, which an application writes datagrams
    to as it would to a connected UDP transport.
  - L{IPathObserver}: what a path tells whoever watches it (up, moved,
    lost, failed) and L{IPathReceiver}: the datagrams it brings.
  - L{ICandidate}: an address a contact may be reached at, which knows how
    to send there.
  - L{IPhonebook}: the stage manager's phonebook backend.
  - L{IServerDialect} and L{IPeerDialect}: another protocol spoken on the
    stage manager's and a peer's socket beside punchd's own (the original
    programs' text protocol is one).

Every implementation is checked against its interface with
L{zope.interface.verify} in the tests.
"""

from zope.interface import Attribute, Interface


class ICandidate(Interface):
    """
    An address a contact may be reached at, with the means to send there.
    """

    address = Attribute("The C{(host, port)} datagrams go to.")
    kind = Attribute(
        "What kind of address it is: C{'local'}, C{'peer-reflexive'},"
        " C{'public'} or C{'relayed'}, through a TURN relay (see"
        " L{punchd.punching} and L{punchd.relaying})."
    )
    priority = Attribute("An L{int}: the higher, the more it is preferred.")

    def send(datagram):
        """
        Send a datagram to this candidate.

        @param datagram: The datagram, L{bytes}.
        """


class IPath(Interface):
    """
    A path to one contact: an application writes to it as to a connected
    UDP transport, and punchd carries each datagram to the contact.
    """

    peerName = Attribute("The contact's name.")
    state = Attribute(
        "C{'punching'}, C{'up'}, C{'failed'}, C{'lost'} or C{'stopped'}."
    )
    selected = Attribute("The L{ICandidate} in use while up, or L{None}.")
    kind = Attribute("The kind of the selected candidate, or L{None} while not up.")
    family = Attribute(
        'The address family of the selected candidate, C{"IPv4"} or C{"IPv6"}, or L{None}'
        " while not up."
    )
    rtt = Attribute("The last round trip measured on the path, in seconds, or L{None}.")

    def write(data):
        """
        Send a datagram to the contact over the path.

        @param data: L{bytes}, at most the path's maximum payload: for a
            punched path, L{punchd.frames.MAX_PAYLOAD_BYTES} (1452).
        @raise ValueError: If C{data} is larger than the path carries.
        @raise RuntimeError: If the path is not up.
        """

    def getPeer():
        """
        The contact's address on the path now.

        @return: An L{twisted.internet.address.IPv4Address} or
            L{twisted.internet.address.IPv6Address} of type C{'UDP'}, or
            L{None} while the path is not up.
        """

    def start():
        """
        Start opening the path.
        """

    def handle(datagram, message, source):
        """
        Take a STUN message that came to the peer's socket and may be this
        path's.

        @param datagram: The datagram as received, for integrity checks.
        @param message: It, decoded: a L{punchd.stun.Message}.
        @param source: The C{(host, port)} it came from.
        @return: L{True} if it was this path's, and is taken care of.
        """

    def stop():
        """
        Close the path: nothing more is sent and no timer of it remains.
        """


class IPathObserver(Interface):
    """
    Told what happens to a path.
    """

    def pathUp(path):
        """
        The path came up.

        @param path: The L{IPath}.
        """

    def pathMoved(path, previous):
        """
        The path moved to another candidate: a better one answered, or the
        contact's address changed.

        @param path: The L{IPath}, with its new L{IPath.selected}.
        @param previous: The L{ICandidate} it used before.
        """

    def pathLost(path):
        """
        The path was up, and nothing has come from the contact for too
        long.
        """

    def punchFailed(path):
        """
        No candidate answered in time: the path never came up.
        """


class IPathReceiver(Interface):
    """
    Takes the datagrams a path brings from its contact.
    """

    def dataReceived(path, data, source):
        """
        A datagram from the contact.

        @param path: The L{IPath} it came over.
        @param data: Its payload, L{bytes}.
        @param source: The C{(host, port)} it came from.
        """


class IPhonebook(Interface):
    """
    The stage manager's phonebook: name to L{punchd.phonebook.Entry},
    bounded, with entries that expire.

    Each method returns its result, or a L{twisted.internet.defer.Deferred}
    that fires with it: an in-memory backend answers at once, and the stage
    manager goes on in the same call; a shared one (over the network)
    answers later, and the stage manager goes on then.  Time is passed in.
    """

    maxEntries = Attribute("The most entries held.")
    ttl = Attribute("Seconds an entry lives without a refresh.")

    def __len__():
        """
        How many entries it holds now.
        """

    def lookup(name, now):
        """
        Find a live entry.

        @return: The L{punchd.phonebook.Entry} for C{name}, or L{None} when
            there is none or it has expired (or a Deferred of it).
        """

    def register(
        name,
        address,
        localAddresses,
        wants,
        now,
        proven=False,
        secret=None,
        previousSecret=None,
        nat=None,
    ):
        """
        Add C{name}, or update it in place.

        @param wants: The names of its contacts, a L{tuple}.
        @param proven: Whether the registration proved its address.
        @param secret: A new name secret to give the entry, or L{None} to
            keep the ones it has.
        @param previousSecret: With C{secret}, the secret it replaces, still
            good for one round; or L{None}.
        @param nat: How the peer's NAT maps and filters, as its
            registration said, or L{None}.
        @return: A 2-tuple (or a Deferred of it): the entry; the entry as it
            was before, or L{None} if the name is new.
        @raise punchd.phonebook.PhonebookFull: If the name is new and the
            phonebook full (or a Deferred that fails with it): no live
            entry is ever forgotten to make room.
        @raise punchd.phonebook.SourceQuotaReached: If the source address
            and port, or its IP, holds as many names as it may.
        """

    def refresh(name, address, now):
        """
        Keep C{name} another TTL from C{now}, with nothing else changed, if
        it is live, registered from C{address}, and (with a phonebook
        shared by several stage managers) held by this stage manager.

        @return: Whether it was kept (or a Deferred of it).
        """

    def alsoAt(name, address, now):
        """
        Record C{address} as the live entry C{name}'s public address of its
        other family (see L{punchd.phonebook.Entry.secondAddress}), for a
        TTL from C{now}; entries found later carry it.

        @return: Whether there was such an entry (or a Deferred of it).
        """

    def remove(name):
        """
        Forget C{name}.

        @return: The removed entry, or L{None} (or a Deferred of it).
        """

    def expire(now):
        """
        Remove every entry not refreshed within the TTL.

        @return: The removed entries, oldest first (or a Deferred of them).
        """


class IStageManager(Interface):
    """
    What the stage manager offers an L{IServerDialect}.
    """

    clock = Attribute("The L{twisted.internet.interfaces.IReactorTime}.")
    phonebook = Attribute("The L{IPhonebook}.")
    stats = Attribute("Counters by event name, a L{collections.Counter}.")
    drops = Attribute("The L{punchd.drops.DropCounter} of dropped datagrams.")

    def write(datagram, address, limit=None):
        """
        Send a datagram from the stage manager's port.

        @param limit: The most bytes it may be, for an answer to a source
            that has not proven its address; L{None} for no limit.
        @return: Whether it was sent: not if it would exceed C{limit}.
        """

    def sendIntroduction(to, encode):
        """
        Send an introduction to the entry C{to}, a peer that proved its
        address, and again until it is acknowledged.

        @param encode: A function of a transaction ID and the key of the
            recipient's C{MESSAGE-INTEGRITY} (L{punchd.messages.introductionKey}
            of its name secret) returning the introduction's datagram.
        """


class IServerDialect(Interface):
    """
    Another protocol the stage manager speaks on its port, beside its own,
    sharing its phonebook.
    """

    def attach(stageManager):
        """
        Start, on the L{IStageManager} given.
        """

    def describe():
        """
        A line for the log saying what the dialect answers.
        """

    def datagramReceived(datagram, address):
        """
        Take a datagram that may be in this dialect.

        @return: L{True} if it was, and is taken care of; L{False} for the
            stage manager to read it as its own.
        """

    def speaksFor(entry):
        """
        Whether the phonebook entry C{entry} is one of this dialect's peers.
        """

    def registered(entry, previous, seeking):
        """
        A peer of the stage manager's own registered.

        @param previous: The entry as it was before, or L{None}.
        @param seeking: The names of the contacts it seeks an introduction
            to, a L{tuple}.
        """

    def introduce(entry, other):
        """
        Introduce C{entry}, a peer of the stage manager's own that seeks
        C{other}, one of this dialect's peers, to it.
        """


class IPeer(Interface):
    """
    What a peer offers an L{IPeerDialect}.
    """

    clock = Attribute("The L{twisted.internet.interfaces.IReactorTime}.")
    name = Attribute("This peer's name.")
    wants = Attribute("The names of its contacts, a L{tuple}.")
    drops = Attribute("The L{punchd.drops.DropCounter} of dropped datagrams.")

    def send(datagram, address):
        """
        Send a datagram from the peer's socket.
        """

    def adopt(path):
        """
        Make the L{IPath} C{path} the path to the contact it names
        (L{IPath.peerName}), replacing the one there is, and start it.
        """

    def pathTo(name):
        """
        The current L{IPath} to the contact C{name}, or L{None}.
        """


class IPeerDialect(Interface):
    """
    Another protocol a peer speaks on its socket, beside punchd's own.
    """

    def attach(peer):
        """
        Start, on the L{IPeer} given.
        """

    def datagramReceived(datagram, address):
        """
        Take a datagram that may be in this dialect.

        @return: L{True} if it was, and is taken care of.
        """

    def introduced(message):
        """
        Take an introduction from the stage manager, already authenticated
        as coming from it, that may be of one of this dialect's peers.

        @param message: The C{INTRODUCE} request, a L{punchd.stun.Message}.
        @return: L{True} if it was, and is taken care of.
        @raise punchd.messages.InvalidMessage: If it was, but breaks a rule.
        """
