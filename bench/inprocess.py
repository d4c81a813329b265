"""
The stage manager in this process: a L{StageManagerProtocol} on a transport
that only counts what it is given, with a phonebook filled directly, and
registration datagrams fed to C{datagramReceived} as the reactor would.

This measures the protocol and the phonebook alone: decoding, the phonebook
update, encoding the answer and the logging a refresh causes.  It leaves out
the socket calls and the reactor, which L{bench.cost} measures with the real
server.
"""

import gc
import random
import time

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)

from punchd import messages
from punchd.phonebook import Phonebook
from punchd.server import StageManagerProtocol


class NullTransport:
    """
    A datagram transport that sends nothing and counts what it is given.
    """

    def __init__(self):
        self.written = 0

    def write(self, datagram, address):
        self.written += 1

    def getHost(self):
        return IPv4Address("UDP", "127.0.0.1", 3478)


def quietLogging():
    """
    Begin logging as a server would, to an observer that drops every event,
    so that events cost what emitting them costs and are not buffered.
    """
    globalLogBeginner.beginLoggingTo(
        [
            FilteringLogObserver(
                lambda event: None,
                [LogLevelFilterPredicate(defaultLogLevel=LogLevel.critical)],
            )
        ],
        redirectStandardIO=False,
        discardBuffer=True,
    )


def peer(index):
    """
    The made-up peer number C{index}: its name, the name it wants, a public
    address of its own, and one local address of the kind home networks
    have.

    Public addresses are all different, as peers behind different NATs have;
    local hosts repeat, as C{192.168.1.x} does across home networks.
    """
    name = f"peer-{index:07d}"
    wants = f"peer-{index ^ 1:07d}"
    public = (
        f"{10 + (index >> 24) % 200}.{(index >> 16) & 255}.{(index >> 8) & 255}.{index & 255}",
        1024 + index % 60000,
    )
    local = (f"192.168.{index % 4}.{2 + index % 250}", 40000 + index % 20000)
    return name, wants, public, local


def secret(index):
    """
    The name secret the stage manager gave the made-up peer C{index}.
    """
    return index.to_bytes(16, "big")


def stageManager(entries, ttl=3600.0):
    """
    A started stage manager whose phonebook holds C{entries} peers, made
    with L{peer} and registered directly with the phonebook.
    """
    clock = Clock()
    clock.advance(1000)
    book = Phonebook(max(entries, 1) + 1000, ttl)
    protocol = StageManagerProtocol(clock, book)
    protocol.makeConnection(NullTransport())
    for index in range(entries):
        name, wants, public, local = peer(index)
        book.register(name, public, (local,), (wants,), 1000.0, True, secret(index))
    return protocol


def registration(protocol, index, txid):
    """
    The registration datagram of peer C{index} to C{protocol}, echoing the
    cookie the stage manager gives its address, as a peer does once it has
    one, and proving its name's secret; and the address it comes from.

    It proves the secret the peer was first given, which the stage manager
    keeps taking as the previous one (as after a lost answer), so that
    datagrams made in advance stay good however often they are fed: a
    refresh costs one check of the proof more than a peer's, whose proof
    is the current secret.
    """
    name, wants, public, local = peer(index)
    return (
        messages.encodeRegistration(
            txid,
            messages.Registration(
                name, (wants,), (local,), (), protocol.cookies.issue(public)
            ),
            messages.UNPROVEN_REGISTRATION_BYTES,
            messages.registrationKey(secret(index)),
        ),
        public,
    )


def refreshes(protocol, entries, count, seed=1):
    """
    C{count} registration datagrams of peers drawn at random from the first
    C{entries}, each from the address its peer registered from: refreshes,
    as most of a stage manager's traffic is.
    """
    rng = random.Random(seed)
    datagrams = []
    for n in range(count):
        datagrams.append(
            registration(protocol, rng.randrange(entries), n.to_bytes(12, "big"))
        )
    return datagrams


def feed(protocol, datagrams, rounds=1):
    """
    Hand every datagram to the protocol, C{rounds} times.

    @return: CPU seconds per datagram.
    """
    receive = protocol.datagramReceived
    gc.collect()
    start = time.process_time()
    for _ in range(rounds):
        for datagram, address in datagrams:
            receive(datagram, address)
    return (time.process_time() - start) / (rounds * len(datagrams))
