"""
miniupnpd (Debian's C{miniupnpd-nftables}) run by a test on a NAT router of
the lab (L{tests.natlab}), answering PCP and NAT-PMP on the router's LAN
side, with UPnP IGD off.

What it needs that the package does not give:

  - The nftables table and chains it adds its rules to.  Debian's
    C{/etc/miniupnpd/nft_init.sh} would make them but sources a
    C{miniupnpd_functions.sh} the package lacks, so L{MiniUPnPd.start}
    makes them itself (L{RULESET}): table C{inet filter} with the hooked
    chains C{forward}, C{prerouting} and C{postrouting} jumping to
    C{miniupnpd}, C{prerouting_miniupnpd} and C{postrouting_miniupnpd}.
  - A public address that is not reserved: miniupnpd refuses every mapping
    (NAT-PMP result 3, network failure) when its external interface has a
    private or documentation address, and the lab's are documentation
    ones.  L{globalise} gives the router's WAN L{GLOBAL_PUBLIC} instead;
    like every lab address it exists only inside the lab's namespaces.

Its configuration file, lease file and pid file are in a temporary
directory, removed at L{MiniUPnPd.stop}, which stops it by its pid.
"""

import os
import re
import shutil
import subprocess
import tempfile
import time

from punchd.test.optional import require
from tests.natlab import _LAN_A, _LAN_B, natRuleset

#: The router's public address once L{globalise}d, and the inet router's
#: address beside it: outside every range miniupnpd counts as reserved.
GLOBAL_PUBLIC = "192.0.3.1"
_GLOBAL_INET_SIDE = "192.0.3.254"

_LANS = {"natA": _LAN_A, "natB": _LAN_B}
_INET_LINKS = {"natA": "nA", "natB": "nB"}

READY = "Listening for NAT-PMP/PCP traffic on port 5351"

#: The table and chains miniupnpd's nftables back end adds its rules to,
#: with the names its configuration gives them.
RULESET = """\
table inet filter {
    chain forward {
        type filter hook forward priority 0; policy accept;
        jump miniupnpd
    }
    chain miniupnpd {
    }
    chain prerouting {
        type nat hook prerouting priority -100; policy accept;
        jump prerouting_miniupnpd
    }
    chain postrouting {
        type nat hook postrouting priority 100; policy accept;
        jump postrouting_miniupnpd
    }
    chain prerouting_miniupnpd {
    }
    chain postrouting_miniupnpd {
    }
}
"""


#: A table that drops PCP requests on their way to miniupnpd: the byte
#: after the 8-byte UDP header is the version.
DROP_PCP = """\
table inet punchd_droppcp {
    chain input {
        type filter hook input priority -10; policy accept;
        udp dport 5351 @th,64,8 2 counter drop
    }
}
"""


def miniupnpdUnavailable():
    """
    Why miniupnpd cannot run here, or L{None}.
    """
    if shutil.which("miniupnpd") is None:
        return "miniupnpd is not installed (Debian package miniupnpd-nftables)"
    return None


def requireMiniupnpd(testCase):
    """
    Skip C{testCase}, saying why, when miniupnpd cannot run; under
    C{CI=true}, fail it instead.
    """
    reason = miniupnpdUnavailable()
    require(testCase, reason is None, reason)


def globalise(lab, nat="natB"):
    """
    Give the lab's router C{nat} the public address L{GLOBAL_PUBLIC} in
    place of its own, with its NAT rules and the lab's record of its
    address moved too.  Call it before the peers start.
    """
    attribute = "natAPublic" if nat == "natA" else "natBPublic"
    old = getattr(lab, attribute)
    lab.run("inet", ["ip", "addr", "add", f"{_GLOBAL_INET_SIDE}/24", "dev", _INET_LINKS[nat]],
            check=True)
    for argv in (
        ["ip", "addr", "del", f"{old}/24", "dev", "wan"],
        ["ip", "addr", "add", f"{GLOBAL_PUBLIC}/24", "dev", "wan"],
        ["ip", "route", "add", "default", "via", _GLOBAL_INET_SIDE],
    ):
        lab.run(nat, argv, check=True)
    natType = lab.natA if nat == "natA" else lab.natB
    lab.run(nat, ["nft", "-f", "-"], input=natRuleset(natType, GLOBAL_PUBLIC, _LANS[nat][0],
                                                      lab.hairpin), check=True)
    setattr(lab, attribute, GLOBAL_PUBLIC)


class MiniUPnPd:
    """
    One C{miniupnpd} on a router of a lab.

    @ivar output: What it logged, once stopped.
    """

    def __init__(self, lab, nat="natB"):
        self.lab = lab
        self.nat = nat
        self.gateway = _LANS[nat][1]
        self._directory = None
        self._process = None
        self._log = None
        self.output = ""

    def configuration(self):
        """
        Its configuration: PCP and NAT-PMP on the LAN bridge, UPnP off,
        mappings only for a client's own address, and only to ports from
        1024 of the LAN.
        """
        return "\n".join([
            "ext_ifname=wan",
            "listening_ip=lan",
            "http_port=0",
            "enable_upnp=no",
            "enable_natpmp=yes",
            "secure_mode=yes",
            "ipv6_disable=yes",
            "upnp_table_name=filter",
            "upnp_nat_table_name=filter",
            "upnp_forward_chain=miniupnpd",
            "upnp_nat_chain=prerouting_miniupnpd",
            "upnp_nat_postrouting_chain=postrouting_miniupnpd",
            f"lease_file={self._directory}/leases",
            f"allow 1024-65535 {_LANS[self.nat][0]} 1024-65535",
            "deny 0-65535 0.0.0.0/0 0-65535",
            "",
        ])

    def start(self, timeout=10.0):
        """
        Make its chains and start it, then wait until it listens.

        @raise AssertionError: If it does not, with what it logged.
        """
        self._directory = tempfile.mkdtemp(prefix="punchd-miniupnpd-")
        path = os.path.join(self._directory, "miniupnpd.conf")
        with open(path, "w") as f:
            f.write(self.configuration())
        self.lab.run(self.nat, ["nft", "-f", "-"], input=RULESET, check=True)
        self._log = open(os.path.join(self._directory, "log"), "w+")
        self._process = self.lab.spawn(
            self.nat,
            ["miniupnpd", "-d", "-f", path, "-P", os.path.join(self._directory, "pid")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while READY not in self.read():
            if time.monotonic() > deadline or self._process.poll() is not None:
                self.stop()
                raise AssertionError(f"miniupnpd did not start:\n{self.output}")
            time.sleep(0.05)
        return self

    def dropPCP(self):
        """
        Make the router drop every PCP request that reaches it (UDP to port
        5351 whose first byte is PCP's version, 2) and keep NAT-PMP's
        (version 0): a router that speaks only NAT-PMP and drops what it
        does not know.  L{stop} removes the rule.
        """
        self.lab.run(self.nat, ["nft", "-f", "-"], input=DROP_PCP, check=True)

    def pcpDropped(self):
        """
        How many PCP requests the rule of L{dropPCP} has dropped.
        """
        listing = self.lab.run(
            self.nat, ["nft", "list", "table", "inet", "punchd_droppcp"], check=True
        ).stdout
        return int(re.search(r"counter packets (\d+)", listing).group(1))

    def read(self):
        """
        What it logged so far.
        """
        if self._log is not None:
            self._log.seek(0)
            self.output = self._log.read()
        return self.output

    def redirects(self):
        """
        The DNAT rules it holds in its chain: one a mapping.
        """
        listing = self.lab.run(
            self.nat, ["nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd"],
            check=True,
        ).stdout
        return [line.strip() for line in listing.splitlines() if "dnat" in line]

    def stop(self):
        """
        Stop it by its pid (SIGTERM, then SIGKILL), remove its table and
        its files.
        """
        process = self._process
        if process is not None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
            self._process = None
            self.read()
            self.lab.run(self.nat, ["nft", "delete", "table", "inet", "filter"])
            self.lab.run(self.nat, ["nft", "delete", "table", "inet", "punchd_droppcp"])
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
