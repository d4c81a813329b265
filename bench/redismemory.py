"""
Memory per entry of the shared phonebook in Redis.

    python -m bench.redismemory [--entries N]

A C{redis-server} of its own (no persistence) takes C{entries}
registrations of distinct peers through the phonebook's register script
(L{punchd.redisbook.REGISTER}), made as the stage manager makes them: the
peers of L{bench.inprocess.peer}, each with a name secret and the
previous one, proven, wanting another peer.  The figure is the growth of
Redis's C{used_memory} over the entries, with Redis's C{used_memory_rss}
beside.  Needs redis-py (the
C{bench} extra), to send the registrations pipelined.
"""

import argparse
import os

from bench.inprocess import peer
from punchd.redisbook import REGISTER, encodeBody, secretField
from punchd.test.redisserver import RedisServer


def run(entries, batch=5000, prefix="punchd:"):
    import redis

    server = RedisServer(unix=True).start()
    try:
        client = redis.Redis(unix_socket_path=server.socketPath)
        sha = client.script_load(REGISTER)
        client.execute_command("MEMORY", "PURGE")
        before = client.info("memory")
        keyTTL = str(3600 * 1000)
        for start in range(0, entries, batch):
            pipe = client.pipeline(transaction=False)
            for index in range(start, min(entries, start + batch)):
                name, wants, public, local = peer(index)
                body = encodeBody(True, 1000.0 + index, "a1b2c3d4", (wants,), public, (local,))
                pipe.evalsha(
                    sha,
                    2,
                    prefix + "e:" + name,
                    prefix + "seen",
                    name,
                    body,
                    # A proven peer's entry holds the secret its last
                    # registration moved on from, beside the secret.
                    secretField(os.urandom(16), os.urandom(16)),
                    repr(1000.0 + index),
                    keyTTL,
                    str(entries),
                    prefix,
                    "4",
                    "2000",
                )
            pipe.execute()
        after = client.info("memory")
        held = client.zcard(prefix + "seen")
        grown = after["used_memory"] - before["used_memory"]
        return {
            "entries": held,
            "bytes": grown,
            "bytesPerEntry": grown / held,
            "rssBytesPerEntry": (after["used_memory_rss"] - before["used_memory_rss"]) / held,
            "valueBytes": len(client.get(prefix + "e:" + peer(0)[0])),
        }
    finally:
        server.cleanup()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.redismemory")
    parser.add_argument("--entries", type=int, default=1000000)
    args = parser.parse_args(argv)
    figures = run(args.entries)
    print(
        f"{figures['entries']} entries in Redis: {figures['bytes'] / 2**20:.1f} MiB,"
        f" {figures['bytesPerEntry']:.0f} bytes an entry (used_memory;"
        f" {figures['rssBytesPerEntry']:.0f} resident); an entry's value is"
        f" {figures['valueBytes']} bytes"
    )
    return figures


if __name__ == "__main__":
    main()
