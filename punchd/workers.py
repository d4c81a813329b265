"""
C{punch-server --workers N}: N processes on one UDP port, sharing one
phonebook in Redis.

The first process, the one C{twistd} started, binds the port with
C{SO_REUSEPORT} and serves on it as the first worker; it starts the N - 1
others as child processes that bind the same address and port the same
way, and starts another in place of one that ends.  Linux hands each
datagram to one of the sockets by a hash of its source and destination, so
a peer keeps talking to one worker, the one that holds its entry, while
the set of workers stays the same.  Workers introduce one another's peers
through Redis, as separate stage managers do (L{punchd.relay}).

A child asks Linux for SIGTERM when its parent ends (C{PR_SET_PDEATHSIG}),
so that no worker outlives the stage manager.
"""

import json
import os
import signal
import socket
import sys

from twisted.application import service
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from punchd.systemd import AdoptedDatagramPort, InheritedSocket

#: Seconds before a worker that ended is started again.
RESTART_DELAY = 1.0


def reusePortAvailable():
    """
    Whether this system has C{SO_REUSEPORT}, which C{--workers} needs.
    """
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def bindReusePort(interface, port):
    """
    A UDP socket bound to C{interface} and C{port} with C{SO_REUSEPORT}.

    @return: An L{InheritedSocket} whose descriptor is the caller's.
    """
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and interface == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((interface or "0.0.0.0", port))
        address = s.getsockname()[:2]
    except BaseException:
        s.close()
        raise
    return InheritedSocket(s.detach(), family, address)


class ReusePortDatagramServer(AdoptedDatagramPort):
    """
    A UDP port bound with C{SO_REUSEPORT}, shared with the other workers.

    @ivar port: The port given; once started, the one bound.
    """

    def __init__(self, port, protocol, interface, reactor):
        super().__init__(None, protocol, reactor)
        self.port = port
        self.interface = interface

    def privilegedStartService(self):
        self.inherited = bindReusePort(self.interface, self.port)
        self.port = self.inherited.address[1]
        super().privilegedStartService()


def dieWithParent():
    """
    Have Linux send this process SIGTERM when its parent ends.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def twistdArguments(argv):
    """
    The options of C{twistd} itself for a worker: in the foreground, with no
    pid file, and this process's C{--logger}, from its C{argv} (before
    C{punch-server}).
    """
    out = ["--nodaemon", "--pidfile="]
    for i, arg in enumerate(argv):
        if arg == "--logger" and i + 1 < len(argv):
            out += [arg, argv[i + 1]]
        elif arg.startswith("--logger="):
            out.append(arg)
    return out


def childArguments(argv, port, group):
    """
    The command-line of a worker, from the first process's own C{argv}
    (what follows C{punch-server}): the same options, the port the first
    bound, no metrics port of its own, and C{--worker-of GROUP}, the first
    process's id.
    """
    out = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--metrics-port", "--workers", "--port", "-p", "--worker-of"):
            skip = True
            continue
        if arg.startswith(("--metrics-port=", "--workers=", "--port=", "--worker-of=")):
            continue
        out.append(arg)
    return out + ["--port", str(port), "--worker-of", group]


class _Worker(ProcessProtocol):
    def __init__(self, pool, number):
        self.pool = pool
        self.number = number

    def processEnded(self, reason):
        self.pool._ended(self, reason)


class WorkerPool(service.Service):
    """
    The N - 1 workers besides this process, each a C{twistd punch-server}
    child process on the same port, started again when one ends.
    """

    log = Logger()

    def __init__(
        self, count, port, argv, reactor, group, executable=sys.executable, twistdArgs=None
    ):
        """
        @param count: The workers to start besides this process.
        @param port: The L{ReusePortDatagramServer} of this process, whose
            port the workers bind.
        @param argv: This process's options, what follows C{punch-server}.
        @param group: This process's id, which its workers report their
            counters under (L{WorkerStats}).
        """
        self.count = count
        self.group = group
        self._port = port
        self._argv = list(argv)
        self._reactor = reactor
        self._executable = executable
        self._twistdArgs = ["--nodaemon", "--pidfile="] if twistdArgs is None else twistdArgs
        self._workers = {}
        self._stopping = None

    def command(self):
        return (
            [self._executable, "-c", "from twisted.scripts.twistd import run; run()"]
            + self._twistdArgs
            + ["punch-server"]
            + childArguments(self._argv, self._port.port, self.group)
        )

    def startService(self):
        super().startService()
        for number in range(1, self.count + 1):
            self._start(number)

    def _start(self, number):
        if not self.running:
            return
        worker = _Worker(self, number)
        argv = self.command()
        process = self._reactor.spawnProcess(
            worker, argv[0], argv, env=os.environ, childFDs={0: "w", 1: 1, 2: 2}
        )
        worker.process = process
        worker.pid = process.pid
        self._workers[number] = worker
        self.log.info(
            "Started worker {number} of {count} (pid {pid}) on port {port}",
            number=number + 1,
            count=self.count + 1,
            pid=process.pid,
            port=self._port.port,
        )

    def _ended(self, worker, reason):
        if self._workers.get(worker.number) is worker:
            del self._workers[worker.number]
        if self._stopping is not None:
            if not self._workers:
                d, self._stopping = self._stopping, None
                d.callback(None)
            return
        self.log.warn(
            "Worker {number} (pid {pid}) ended ({why}); starting another in {delay} s",
            number=worker.number + 1,
            pid=worker.pid,
            why=reason.getErrorMessage(),
            delay=RESTART_DELAY,
        )
        self._reactor.callLater(RESTART_DELAY, self._start, worker.number)

    def pids(self):
        """
        The workers' process ids, by worker number (2 to N).
        """
        return {n + 1: w.pid for n, w in self._workers.items()}

    def stopService(self):
        from twisted.internet.defer import Deferred

        super().stopService()
        if not self._workers:
            return None
        self._stopping = Deferred()
        self._signal("TERM")
        later = self._reactor.callLater(5, self._signal, "KILL")
        return self._stopping.addBoth(lambda result: later.active() and later.cancel() or result)

    def _signal(self, name):
        from twisted.internet.error import ProcessExitedAlready

        for worker in list(self._workers.values()):
            try:
                worker.process.signalProcess(name)
            except ProcessExitedAlready:
                pass


#: Seconds between two reports of a worker's counters.
REPORT_INTERVAL = 1.0

#: Milliseconds the reports of a group's workers outlive the last one.
REPORT_LIFETIME = 5000


class WorkerStats(service.Service):
    """
    The counters of the workers on one port, through Redis: each worker
    but the first writes its own to the hash C{PREFIX workers:GROUP} every
    second, and the first, which serves the metrics, adds them to its own.

    A worker that ends takes its counters with it, once its last report
    expires: the sums then fall, and Prometheus takes it for a reset.
    """

    def __init__(self, store, group, holder, protocol, reactor, report, prefix="punchd:"):
        """
        @param store: The L{punchd.redisstore.RedisStore}.
        @param group: The first process's id.
        @param holder: This process's id.
        @param protocol: Its L{punch.server.StageManagerProtocol}.
        @param report: Whether this process writes its counters (a worker)
            or reads the others' (the first).
        """
        self.store = store
        self.holder = holder
        self.key = prefix + "workers:" + group
        self._protocol = protocol
        self._report = report
        self._loop = LoopingCall(self.report)
        self._loop.clock = reactor

    def startService(self):
        super().startService()
        if self._report:
            self._loop.start(REPORT_INTERVAL, now=False)

    def stopService(self):
        super().stopService()
        if self._loop.running:
            self._loop.stop()

    def report(self):
        """
        Write this worker's counters.
        """
        if not self.store.available:
            return
        data = json.dumps([dict(self._protocol.stats), dict(self._protocol.drops.counts)])
        d = self.store.call("HSET", self.key, self.holder, data)
        d.addCallback(lambda _: self.store.call("PEXPIRE", self.key, REPORT_LIFETIME))
        # A report lost leaves the sums a second older, no more.
        d.addErrback(lambda _: None)
        return d

    def gather(self):
        """
        The other workers' last counters.

        @return: A L{Deferred} of a list of C{(stats, drops)} L{dict}s.
        """
        return self.store.call("HGETALL", self.key).addCallback(self._read)

    def _read(self, reply):
        others = []
        for i in range(0, len(reply or ()), 2):
            if reply[i].decode() != self.holder:
                stats, drops = json.loads(reply[i + 1])
                others.append((stats, drops))
        return others
