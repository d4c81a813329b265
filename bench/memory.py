"""
Benchmark 3: resident memory per live registration.

In this process (see L{bench.inprocess}): a stage manager with an empty
phonebook is handed registration datagrams of distinct peers, as the
network would bring them, until the phonebook holds C{entries}; the figure
is the growth of this process's resident memory (C{/proc/self/statm})
divided by the entries.  Each peer has a name of 12 characters, wants
another peer's name, registers from a public address of its own and
reports one local address of the kind home networks have.
"""

import gc

from bench import inprocess
from bench.loadgen import rssBytes


def run(entries, chunk=10000):
    """
    @return: A L{dict}: C{entries}, C{bytes} (the resident growth) and
        C{bytesPerEntry}.
    """
    inprocess.quietLogging()
    protocol = inprocess.stageManager(0, ttl=86400.0)
    protocol.phonebook.maxEntries = entries
    receive = protocol.datagramReceived
    gc.collect()
    before = rssBytes()
    for start in range(0, entries, chunk):
        batch = [
            inprocess.registration(protocol, index, index.to_bytes(12, "big"))
            for index in range(start, min(entries, start + chunk))
        ]
        for datagram, address in batch:
            receive(datagram, address)
        del batch
    gc.collect()
    grown = rssBytes() - before
    held = len(protocol.phonebook)
    protocol.stopProtocol()
    return {"entries": held, "bytes": grown, "bytesPerEntry": grown / held}
