"""
Stand-ins for the original C{test-server} and C{test-client}, written from
their wire behaviour as C{shared/seed/original-programs.md} describes it
(not from their source, which is not ours to copy).

They behave as the originals do, defects and all: the server keeps 16
slots, round robin, and answers anyone with every filled slot; the client
blocks on one receive at a time, registers every 30 receive attempts, takes
any datagram from the server's exact address as a phonebook line and sends
its direct message after every receive attempt once it knows its contact.
They print what the originals print.

They run over L{punchd.testing}'s simulated network, on a clock, and as
real processes::

    python -m punchd.test.seedfake server -p PORT [-i ADDR]
    python -m punchd.test.seedfake client -s IPV4 -p PORT -n NAME -c CONTACT
        [--attempts 30] [--timeout 1] [--pause 1]

Each option past those of the originals is only there to make tests quick.
"""

import argparse
import sys
from collections import deque

from twisted.internet.protocol import DatagramProtocol

#: The originals read at most this many bytes of a datagram.
BUFFER = 1023

#: The original server's table size.
MAXCLIENTS = 16

#: Datagrams the client's socket holds while the client is not reading: a
#: small socket buffer.
SOCKET_BUFFER = 256


def _name(datagram):
    # The text up to the first CR, LF or space.
    text = datagram[:BUFFER]
    for end in (b"\r", b"\n", b" "):
        text = text.split(end, 1)[0]
    return text.decode("latin-1")


class _Printer:
    def __init__(self, write):
        self._write = write
        self.output = []

    def print(self, text="", end="\n"):
        self.output.append(text + end)
        if self._write is not None:
            self._write(text + end)

    @property
    def transcript(self):
        """
        Everything printed, as one string.
        """
        return "".join(self.output)


class FakeTestServer(DatagramProtocol, _Printer):
    """
    The original C{test-server}.

    @ivar table: The slots: C{[name, (ip, port)]} or L{None}.
    """

    noisy = False

    def __init__(self, write=None):
        """
        @param write: A function of the text to print, besides keeping it in
            C{output}; L{None} to only keep it.
        """
        _Printer.__init__(self, write)
        self.table = [None] * MAXCLIENTS
        self._next = 0

    def startProtocol(self):
        port = self.transport.getHost().port
        self.print(f"Connection Server ready to receive on port {port}.")
        self.print("Make sure this is reachable from the internet.")

    def datagramReceived(self, datagram, address):
        name = _name(datagram)
        ip, port = address[0], address[1]
        self.print(f"Client from {ip} : {port} sent: {name}")
        if not name:
            # The original takes a null pointer for the name here: undefined
            # behaviour, a crash once any name is registered.
            self.print("(an empty name: the original would crash here; ignored)")
            return
        for slot, entry in enumerate(self.table):
            if entry is not None and entry[0] == name:
                entry[1] = (ip, port)
                self.print(f"Updating client #{slot} in table of clients.")
                break
        else:
            slot = self._next
            self._next = (self._next + 1) % MAXCLIENTS
            self.table[slot] = [name, (ip, port)]
            self.print(f"Adding client #{slot} to table of clients.")
        filled = [(slot, e) for slot, e in enumerate(self.table) if e is not None]
        for slot, (entryName, (entryIP, entryPort)) in filled:
            line = f"{slot},{len(filled)},{entryName},{entryIP},{entryPort}"
            self.print(line)
            self.transport.write(f"{line}\n".encode("latin-1"), address)


class FakeTestClient(DatagramProtocol, _Printer):
    """
    The original C{test-client}.

    Its blocking loop is played on the clock: one receive attempt at a time,
    taking a datagram the socket already holds at once, else waiting for one
    up to C{timeout} seconds; after each attempt, once the contact is known,
    a pause of C{pause} seconds, then the direct message.

    @ivar contact: The contact's C{(ip, port)}, or L{None}.
    @ivar received: The peer messages received, as C{(text, (ip, port))}.
    @ivar registrations: How many times it registered.
    """

    noisy = False

    def __init__(
        self,
        clock,
        server,
        name,
        contactName,
        attempts=30,
        timeout=1.0,
        pause=1.0,
        write=None,
    ):
        """
        @param clock: An L{twisted.internet.interfaces.IReactorTime}.
        @param server: The server's C{(ipv4, port)}, as given with C{-s} and
            C{-p}.
        @param name: Its name, C{-n}.
        @param contactName: Its contact's name, C{-c}.
        @param attempts: Receive attempts between two registrations.
        @param timeout: The receive timeout, in seconds.
        @param pause: Seconds it sleeps before each direct message.
        @param write: See L{FakeTestServer.__init__}.
        """
        _Printer.__init__(self, write)
        self.clock = clock
        self.server = server
        self.name = name
        self.contactName = contactName
        self.attempts = attempts
        self.timeout = timeout
        self.pause = pause
        self.contact = None
        self.received = []
        self.registrations = 0
        self._countdown = attempts
        self._queue = deque()
        self._call = None
        self._receiving = False

    def startProtocol(self):
        self.print(f"Stage Manager Server address: {self.server[0]}")
        self.print(f"My Name: {self.name}")
        self._register()
        self.print("Retrieving incoming messages")
        self._attempt()

    def stopProtocol(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _register(self):
        self.print("Registering with Stage Manager.")
        self.transport.write(self.name.encode("latin-1"), self.server)
        self.registrations += 1

    def _attempt(self):
        self.print(".", end="")
        if self._queue:
            self._after(*self._queue.popleft())
        else:
            self._receiving = True
            self._call = self.clock.callLater(self.timeout, self._after, None, None)

    def datagramReceived(self, datagram, address):
        datagram = datagram[:BUFFER]
        if self._receiving:
            self._call.cancel()
            self._after(datagram, address)
        elif len(self._queue) < SOCKET_BUFFER:
            self._queue.append((datagram, address))

    def _after(self, datagram, address):
        self._receiving = False
        self._call = None
        if datagram is not None:
            self._handle(datagram, address)
        self._countdown -= 1
        if self._countdown == 0:
            self._countdown = self.attempts
            self._register()
            self.print("Retrieving incoming messages", end="")
        if self.contact is None:
            self._attempt()
        else:
            self._call = self.clock.callLater(self.pause, self._send)

    def _send(self):
        self._call = None
        self.transport.write(
            f"This is a direct P2P message from {self.name} to {self.contactName}".encode(
                "latin-1"
            ),
            self.contact,
        )
        self._attempt()

    def _handle(self, datagram, address):
        ip, port = address[0], address[1]
        text = datagram.decode("latin-1")
        if (ip, port) == tuple(self.server):
            line = text.rstrip("\n")
            self.print(f"Stage Manager sent us a Phonebook entry: {line}")
            # Read as the original does: fields between commas, numbers as
            # atoi reads them.
            fields = line.split(",")
            if len(fields) < 5:
                return
            slot, count, name, peerIP, peerPort = fields[:5]
            self.print(f"Peer: {_atoi(slot)}/{_atoi(count)} {name}@{peerIP},{_atoi(peerPort)}")
            if name == self.contactName:
                self.contact = (peerIP, _atoi(peerPort))
                self.print(f"Located {self.contactName}!")
        else:
            self.print(f"We received a peer message of len {len(datagram)} from {ip},{port} ->>")
            self.print(text)
            self.received.append((text, (ip, port)))


def _atoi(text):
    digits = ""
    for c in text.strip():
        if not c.isdigit():
            break
        digits += c
    return int(digits) if digits else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m punchd.test.seedfake")
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="the original test-server")
    server.add_argument("-p", type=int, default=8080, dest="port")
    server.add_argument("-i", default="", dest="interface", help="address to bind (default: all)")
    client = commands.add_parser("client", help="the original test-client")
    client.add_argument("-s", required=True, dest="server")
    client.add_argument("-p", type=int, required=True, dest="port")
    client.add_argument("-n", required=True, dest="name")
    client.add_argument("-c", required=True, dest="contact")
    client.add_argument("--attempts", type=int, default=30)
    client.add_argument("--timeout", type=float, default=1.0)
    client.add_argument("--pause", type=float, default=1.0)
    args = parser.parse_args(argv)

    from twisted.internet import reactor

    def write(text):
        sys.stdout.write(text)
        sys.stdout.flush()

    if args.command == "server":
        reactor.listenUDP(args.port, FakeTestServer(write), interface=args.interface)
    else:
        protocol = FakeTestClient(
            reactor,
            (args.server, args.port),
            args.name,
            args.contact,
            attempts=args.attempts,
            timeout=args.timeout,
            pause=args.pause,
            write=write,
        )
        reactor.listenUDP(0, protocol)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
