"""
A log observer for C{twistd --logger bench.timelog.observer}: each event on
one line of standard output, after the C{time.monotonic()} at which it was
emitted, in seconds with microseconds.

The monotonic clock is the machine's, shared by every process and network
namespace on it, so the benchmarks can tell to the millisecond when
something happened in one process relative to another; twistd's own
timestamps have whole seconds.
"""

import sys
import time

from zope.interface import provider

from twisted.logger import ILogObserver, formatEvent


def observer():
    """
    Make the observer.
    """
    # twistd points sys.stdout at the log once logging begins.
    out = sys.__stdout__

    @provider(ILogObserver)
    def emit(event):
        text = formatEvent(event).replace("\n", " ")
        out.write(f"{time.monotonic():.6f} {text}\n")
        out.flush()

    return emit
