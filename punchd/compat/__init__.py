"""
The original C{test-server} and C{test-client}'s text protocol, beside
punchd's own.

  - L{punchd.compat.protocol}: the wire format, pure.
  - L{punchd.compat.introductions}: the stage manager's introduction of a
    native peer to an original client.
  - L{punchd.compat.server}: the stage manager's side
    (C{punch-server --seed-compat}), an
    L{punchd.interfaces.IServerDialect}.
  - L{punchd.compat.contact}: the path to an original client.
  - L{punchd.compat.peer}: a native peer's side, an
    L{punchd.interfaces.IPeerDialect}.
  - L{punchd.compat.client}: a peer that speaks only the original protocol,
    to an original C{test-server} (C{punch-peer --seed-compat}).

The core of punchd imports nothing from here: the taps plug it in.
"""
