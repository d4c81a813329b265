"""
Benchmark 2: how the cost of a registration grows with the phonebook.

In this process (see L{bench.inprocess}): for each size, a stage manager
whose phonebook holds that many live entries, made directly, then
registration datagrams of peers drawn at random from the book, each from
the address it registered from, handed to C{datagramReceived}.  The figure
is CPU time per datagram handled: decoding, the phonebook update, the
answer, and any logging.  Socket calls and the reactor are not in it (see
benchmark 1 for those).
"""

import gc

from bench import inprocess


def run(sizes, datagrams=20000, rounds=3, report=print):
    """
    @return: C{{size: microseconds per registration}}.
    """
    inprocess.quietLogging()
    results = {}
    for size in sizes:
        protocol = inprocess.stageManager(size)
        load = inprocess.refreshes(size, min(datagrams, 10 * size))
        inprocess.feed(protocol, load[: len(load) // 10])  # warm the caches
        best = min(inprocess.feed(protocol, load) for _ in range(rounds))
        results[size] = best * 1e6
        report(size, results[size])
        protocol.stopProtocol()
        del protocol, load
        gc.collect()
    return results
