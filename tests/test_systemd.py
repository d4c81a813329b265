"""
System tests: the units in C{contrib/systemd/} and socket activation, with
the commands of README.rst's "Running under systemd", run as written there
but for C{twistd}'s path and the port.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from twisted.trial.unittest import TestCase

from punchd import stun
from punchd.demo import Processes, twistdCommand
from punchd.test.optional import require
from tests.processes import waitFor

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"

#: Where the units expect twistd.
INSTALLED_TWISTD = "/opt/punchd/bin/twistd"


def readmeCommand(start):
    """
    The command in README.rst's "Running under systemd" that begins with
    C{start}, its continuation lines joined.

    @return: Its words.
    """
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = text.split("\nRunning under systemd\n", 1)[1]
    match = re.search(rf"^ +({re.escape(start)}.*?[^\\])$", section, re.MULTILINE | re.DOTALL)
    return shlex.split(match.group(1).replace("\\\n", " "))


def requireTool(testCase, name):
    """
    The path of a program C{testCase} needs.

    @raise SkipTest: If it is not installed, except under CI (C{CI=true}),
        which must install it.
    """
    path = shutil.which(name)
    require(testCase, path is not None, f"{name} is not installed (Debian package: systemd)")
    return path


def installedTwistd(testCase):
    """
    The twistd beside this Python, the one the units' C{ExecStart} stands
    for.
    """
    twistd = shutil.which("twistd", path=os.path.dirname(sys.executable))
    if twistd is None:
        testCase.fail(f"no twistd beside {sys.executable}")
    return twistd


def freeUDPPort():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UnitTests(TestCase):
    """
    The units in C{contrib/systemd/}.
    """

    def test_verify(self):
        """
        README's C{systemd-analyze verify} passes the units without a word,
        with C{twistd} where their C{ExecStart} expects it.
        """
        argv = readmeCommand("systemd-analyze verify")
        argv[0] = requireTool(self, argv[0])
        twistd = installedTwistd(self)
        here = Path(self.mktemp())
        (here / "contrib" / "systemd").mkdir(parents=True)
        for unit in UNITS.iterdir():
            text = unit.read_text(encoding="utf-8")
            (here / "contrib" / "systemd" / unit.name).write_text(
                text.replace(INSTALLED_TWISTD, twistd), encoding="utf-8"
            )
        self.assertEqual(
            sorted(Path(a).name for a in argv[2:]), sorted(u.name for u in UNITS.iterdir())
        )
        result = subprocess.run(
            argv, cwd=here, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))


class SocketActivationTests(TestCase):
    """
    punch-server started by C{systemd-socket-activate}, as systemd starts
    it on the first datagram to the socket unit's port.
    """

    def test_firstDatagramAnswered(self):
        """
        The Binding request that starts the stage manager is answered, from
        the socket systemd bound, and the stage manager stops cleanly.
        """
        argv = readmeCommand("systemd-socket-activate")
        argv[0] = requireTool(self, argv[0])
        port = freeUDPPort()
        listen = argv.index("--listen")
        self.assertEqual(argv[listen + 1], "127.0.0.1:8080")
        argv[listen + 1] = f"127.0.0.1:{port}"
        twistd = argv.index("twistd")
        argv[twistd : twistd + 1] = twistdCommand()
        # systemd-socket-activate passes its program no environment but what
        # it is told to.
        if "PYTHONPATH" in os.environ:
            argv.insert(1, "--setenv=PYTHONPATH")
        server = ("127.0.0.1", port)
        with Processes() as processes:
            processes.start("server", argv)
            seen, lines = waitFor(
                processes, {("server", "listening"): re.compile(f"Listening on 127.0.0.1:{port}")}, 20
            )
            self.assertEqual(len(seen), 1, f"systemd-socket-activate did not listen: {lines}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                client.settimeout(20)
                txid = stun.newTransactionID()
                client.sendto(stun.encode(stun.Message(stun.BINDING, stun.REQUEST, txid)), server)
                datagram, source = client.recvfrom(2048)
                answer = stun.decode(datagram)
                self.assertEqual((answer.transactionID, source), (txid, server))
                self.assertEqual(
                    stun.decodeXorAddress(answer.get(stun.XOR_MAPPED_ADDRESS), txid),
                    ("127.0.0.1", client.getsockname()[1]),
                )
            seen, more = waitFor(
                processes,
                {("server", "adopted"): re.compile(f"Stage manager listening on 127.0.0.1:{port}")},
                10,
            )
            lines += more
            self.assertEqual(len(seen), 1, f"the stage manager did not say where: {lines}")
            processes.stop("server")
            lines += list(processes.lines(time.monotonic() + 5))
        self.assertTrue(lines[-1][1].endswith("Server Shut Down."), lines[-3:])
        self.assertEqual([line for line in lines if "Traceback" in line[1]], [])
