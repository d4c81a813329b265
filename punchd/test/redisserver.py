"""
A real C{redis-server} for tests and benchmarks: started on a unix socket
in a temporary directory, or on a free loopback port, with no persistence,
and stopped by its pid.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

#: Why a test that needs C{redis-server} cannot run, when it is missing.
MISSING = "redis-server is not installed: apt-get install redis-server"


def redisServerPath():
    """
    The C{redis-server} program, or L{None} when it is not installed.
    """
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )


def freePort():
    """
    A TCP port free on 127.0.0.1 now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """
    One C{redis-server} child process.

    @ivar url: Its URL for C{punch-server --redis}: C{unix:///PATH} or
        C{redis://127.0.0.1:PORT/0}.
    @ivar socketPath: The unix socket, or L{None} on TCP.
    @ivar port: The TCP port, or L{None} on a unix socket.
    """

    def __init__(self, unix=True, port=None):
        self.directory = tempfile.mkdtemp(prefix="punchd-redis-")
        self.process = None
        if unix:
            self.socketPath = os.path.join(self.directory, "redis.sock")
            self.port = None
            self.url = f"unix://{self.socketPath}"
        else:
            self.socketPath = None
            self.port = port or freePort()
            self.url = f"redis://127.0.0.1:{self.port}/0"

    def argv(self):
        argv = [
            redisServerPath(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            "--loglevel",
            "warning",
        ]
        if self.socketPath is not None:
            argv += ["--port", "0", "--unixsocket", self.socketPath, "--unixsocketperm", "700"]
        else:
            argv += ["--port", str(self.port), "--bind", "127.0.0.1"]
        return argv

    def start(self, timeout=10.0):
        """
        Start it, and wait until it answers C{PING}.
        """
        self.process = subprocess.Popen(
            self.argv(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if self.ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING")

    def _connect(self):
        if self.socketPath is not None:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1.0)
            s.connect(self.socketPath)
        else:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=1.0)
        return s

    def command(self, *args):
        """
        Send one command and return its raw reply, for tests and
        benchmarks that need no client library.
        """
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            arg = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
        with self._connect() as s:
            s.sendall(b"".join(parts))
            reply = b""
            while not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        return reply

    def ping(self):
        try:
            return self.command("PING").startswith(b"+PONG")
        except OSError:
            return False

    def info(self, section):
        """
        The fields of C{INFO section}, as a L{dict} of strings.
        """
        reply = self.command("INFO", section).decode()
        fields = {}
        for line in reply.split("\r\n")[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value
        return fields

    def stop(self):
        """
        Stop it by its pid (SIGKILL if it lingers).
        """
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self):
        """
        Kill it at once, as a crash would.
        """
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def startRedis(testCase, unix=True):
    """
    Start a L{RedisServer} for C{testCase}, stopped when it ends (also on
    failure); skip it, or fail under C{CI=true}, without C{redis-server}.
    """
    from punchd.test.optional import require

    require(testCase, redisServerPath() is not None, MISSING)
    server = RedisServer(unix=unix)
    testCase.addCleanup(server.cleanup)
    server.start()
    return server
