"""
coturn (Debian's C{coturn}, C{turnserver}) run by a test: on loopback, or
in a namespace of the NAT lab, with C{--use-auth-secret
--static-auth-secret}, no configuration file (C{-n}), every file it writes
in a temporary directory, and stopped by its pid, also when the test fails.
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from punchd.test.optional import require

READY = b"Total General servers"


def coturnUnavailable():
    """
    Why coturn cannot run here, or L{None}.
    """
    if shutil.which("turnserver") is None:
        return "turnserver is not installed (Debian package coturn)"
    return None


def requireCoturn(testCase):
    """
    Skip C{testCase}, saying why, when coturn cannot run; under
    C{CI=true}, fail it instead.
    """
    reason = coturnUnavailable()
    require(testCase, reason is None, reason)


def freeUDPPort(host="127.0.0.1"):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Coturn:
    """
    One C{turnserver}.

    @ivar address: Its C{(host, port)}.
    @ivar output: What it printed, once stopped.
    """

    def __init__(
        self,
        host="127.0.0.1",
        port=None,
        secret="punchd test secret",
        realm="punchd",
        extra=(),
        prefix=(),
        relayPorts=None,
    ):
        """
        @param prefix: What goes before C{turnserver} on its command line:
            C{ip netns exec NS} for a lab's namespace.
        @param relayPorts: C{(min, max)} of the relayed ports.
        """
        self.host = host
        self.port = freeUDPPort(host) if port is None else port
        self.address = (host, self.port)
        self.secret = secret
        self.realm = realm
        self._extra = list(extra)
        self._prefix = list(prefix)
        self._relayPorts = relayPorts
        self._directory = None
        self._process = None
        self.output = b""

    def argv(self):
        argv = self._prefix + [
            "turnserver",
            "-n",
            f"--listening-ip={self.host}",
            f"--listening-port={self.port}",
            f"--relay-ip={self.host}",
            "--use-auth-secret",
            f"--static-auth-secret={self.secret}",
            f"--realm={self.realm}",
            "--no-tls",
            "--no-dtls",
            "--no-tcp",
            "--no-tcp-relay",
            "--no-cli",
            "--no-software-attribute",
            "--simple-log",
            "--log-file=stdout",
            f"--userdb={self._directory}/turndb",
            f"--pidfile={self._directory}/turnserver.pid",
        ]
        if self._relayPorts is not None:
            argv += [f"--min-port={self._relayPorts[0]}", f"--max-port={self._relayPorts[1]}"]
        if self.host.startswith("127."):
            argv.append("--allow-loopback-peers")
        return argv + self._extra

    def start(self, timeout=15.0):
        """
        Start it and wait until it says its servers are up.

        @raise AssertionError: If it does not, with what it printed.
        """
        self._directory = tempfile.mkdtemp(prefix="punchd-coturn-")
        self._process = subprocess.Popen(
            self.argv(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self._directory,
            start_new_session=True,
        )
        os.set_blocking(self._process.stdout.fileno(), False)
        deadline = time.monotonic() + timeout
        while READY not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._process.poll() is not None:
                self.stop()
                raise AssertionError(
                    f"turnserver did not start: {self.argv()}\n{self.output.decode('utf-8', 'replace')}"
                )
            select.select([self._process.stdout], [], [], remaining)
            self.output += self._process.stdout.read() or b""
        # The listeners open after the line: a moment for them.
        time.sleep(0.2)
        return self

    def read(self):
        """
        What it printed so far, as text.
        """
        if self._process is not None and self._process.stdout is not None:
            try:
                self.output += self._process.stdout.read() or b""
            except (OSError, ValueError):
                pass
        return self.output.decode("utf-8", "replace")

    def stop(self):
        """
        Stop it by its pid (SIGTERM, then SIGKILL), and remove its files.
        """
        process = self._process
        if process is not None:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            self.read()
            process.stdout.close()
            self._process = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
