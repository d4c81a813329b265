"""
The floor: the least a Python process can do to answer a STUN Binding
request, a bare C{recvfrom}/C{sendto} loop on a blocking socket.

It answers with a correct RFC 8489 success response carrying
C{XOR-MAPPED-ADDRESS}, and does nothing else: no framework, no decoding
beyond the header, no logging.  The server's cost per request is measured
against this one's, in the same run.

    python -m bench.floor [--seconds N]

prints C{floor listening on 127.0.0.1:PORT} and answers until it is killed
or C{--seconds} pass (an alarm ends it, so the loop stays bare).
"""

import argparse
import signal
import socket
import struct
import sys

_COOKIE = 0x2112A442
_REQUEST_HEAD = b"\x00\x01"
_ANSWER_HEAD = struct.pack("!HHI", 0x0101, 12, _COOKIE)
_ATTRIBUTE_HEAD = struct.pack("!HHBB", 0x0020, 8, 0, 1)
_PORT_ADDRESS = struct.Struct("!HI")
_IPV4 = struct.Struct("!I")


def serve(sock):
    """
    Answer Binding requests on C{sock} forever.
    """
    recvfrom = sock.recvfrom
    sendto = sock.sendto
    pack = _PORT_ADDRESS.pack
    unpack = _IPV4.unpack
    aton = socket.inet_aton
    head = _ANSWER_HEAD
    attribute = _ATTRIBUTE_HEAD
    while True:
        data, address = recvfrom(2048)
        if len(data) < 20 or data[:2] != _REQUEST_HEAD:
            continue
        host, port = address
        sendto(
            head
            + data[8:20]
            + attribute
            + pack(port ^ 0x2112, unpack(aton(host))[0] ^ _COOKIE),
            address,
        )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.floor")
    parser.add_argument("--seconds", type=int, default=600, help="lifetime (default 600)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # The kernel's default receive buffer, as the server's socket has.
    sock.bind(("127.0.0.1", args.port))
    print(f"floor listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(args.seconds)
    try:
        serve(sock)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
