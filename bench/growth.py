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


def run(sizes, datagrams=20000, rounds=5, report=print):
    """
    Build a stage manager of each size, then feed them in turn, C{rounds}
    times round, so that a change in the machine's load falls on every
    size alike; the best pass of each counts.

    @return: C{{size: microseconds per registration}}.
    """
    inprocess.quietLogging()
    subjects = []
    for size in sizes:
        protocol = inprocess.stageManager(size)
        load = inprocess.refreshes(protocol, size, min(datagrams, 10 * size))
        inprocess.feed(protocol, load[: len(load) // 10])  # warm the caches
        subjects.append((size, protocol, load))
    best = {size: float("inf") for size in sizes}
    for _ in range(rounds):
        for size, protocol, load in subjects:
            best[size] = min(best[size], inprocess.feed(protocol, load))
    results = {}
    for size, protocol, load in subjects:
        results[size] = best[size] * 1e6
        report(size, results[size])
        protocol.stopProtocol()
    del subjects
    gc.collect()
    return results
