"""
What the system tests share to run the real C{twistd} programs on
127.0.0.1 as children of a L{punchd.demo.Processes}: the command, waiting
for lines of their output, starting a stage manager, and checking that
they stopped cleanly.
"""

import os
import re
import signal
import sys
import time

from punchd.demo import twistdCommand

TWISTD = twistdCommand() + ["--nodaemon", "--pidfile="]

#: The repository, put first on the children's path by L{TREE_PRELUDE} so
#: that they run this tree's code whether or not it is installed.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Python source to begin a child's C{-c} program with: it puts L{ROOT}
#: first on the path.
TREE_PRELUDE = f"import sys; sys.path.insert(0, {ROOT!r}); "

#: C{twistd} running this tree's code.
TREE_TWISTD = [
    sys.executable,
    "-c",
    TREE_PRELUDE + "from twisted.scripts.twistd import run; run()",
    "--nodaemon",
    "--pidfile=",
]
LISTENING = re.compile(r"Stage manager listening on 127\.0\.0\.1:(\d+)")


def received(sender, receiver):
    """
    The line a punch-peer prints for the direct message from C{sender}.
    """
    return re.compile(
        r"We received a peer message of len 46 from 127\.0\.0\.1,\d+ ->> "
        rf"This is a direct P2P message from {sender} to {receiver}$"
    )


def bothReceived():
    """
    The patterns, for L{waitFor}, of alice and bob each printing the
    other's direct message.
    """
    return {
        ("alice", "message"): received("bob", "alice"),
        ("bob", "message"): received("alice", "bob"),
    }


def waitFor(processes, patterns, seconds):
    """
    Read the children's output until every C{(label, pattern)} in
    C{patterns} has matched a line of that child, or C{seconds} pass.

    @return: The C{time.monotonic()} and match of each pattern that matched,
        and every line read, as C{(label, line)}.
    """
    seen = {}
    lines = []
    for label, line in processes.lines(time.monotonic() + seconds):
        lines.append((label, line))
        for key, pattern in patterns.items():
            if key not in seen and key[0] == label:
                match = pattern.search(line)
                if match:
                    seen[key] = (time.monotonic(), match)
        if len(seen) == len(patterns):
            break
    return seen, lines


def startServer(testCase, processes, argv, twistd=TWISTD, patterns=None):
    """
    Start C{twistd punch-server} on 127.0.0.1 and a free port, and wait
    until it listens.

    @return: Its C{(address, port)}, and what C{patterns} matched.
    """
    processes.start(
        "server", twistd + ["punch-server", "--interface", "127.0.0.1", "--port", "0"] + argv
    )
    patterns = {("server", key): pattern for key, pattern in (patterns or {}).items()}
    patterns[("server", "port")] = LISTENING
    seen, lines = waitFor(processes, patterns, 20)
    testCase.assertEqual(len(seen), len(patterns), f"the stage manager did not start: {lines}")
    found = {key: match for (_, key), (_, match) in seen.items()}
    return ("127.0.0.1", int(found.pop("port").group(1))), found


def assertStopsCleanly(testCase, processes, lines):
    """
    Stop the server, after whatever else was stopped, and read the rest of
    the children's output into C{lines}: each child ended itself with the
    SIGTERM that stopped it, its last line "Server Shut Down.", and no line
    of C{lines} is part of a traceback.
    """
    processes.stop("server")
    lines += list(processes.lines(time.monotonic() + 5))
    for label, process in processes.children.items():
        # twistd stopped by a signal ends itself with that signal.
        testCase.assertEqual(process.returncode, -signal.SIGTERM, label)
        said = [line for who, line in lines if who == label]
        testCase.assertTrue(said[-1].endswith("Server Shut Down."), said[-3:])
    testCase.assertEqual([line for line in lines if "Traceback" in line[1]], [])
