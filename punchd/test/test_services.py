"""
Tests for L{punchd.services}.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

from punchd.services import DatagramServer
from punchd.testing import Network


class DatagramServerTests(SynchronousTestCase):
    """
    Tests for L{DatagramServer}.
    """

    def test_saysWhatItListensWith(self):
        """
        The port, the protocol and the address are those it was given.
        """
        protocol = DatagramProtocol()
        server = DatagramServer(4000, protocol, interface="::1")
        self.assertEqual(
            (server.port, server.protocol, server.interface), (4000, protocol, "::1")
        )

    def test_everyIPv4AddressByDefault(self):
        """
        Without an interface it binds every IPv4 address.
        """
        self.assertEqual(DatagramServer(0, DatagramProtocol()).interface, "")

    def test_bindsWhenPrivileged(self):
        """
        It binds its port and address with its protocol while privileges
        are still held, and closes it when stopped.
        """
        host = Network().host("192.0.2.10")
        protocol = DatagramProtocol()
        server = DatagramServer(4000, protocol, interface="192.0.2.10", reactor=host)
        server.privilegedStartService()
        port = protocol.transport
        self.assertEqual(
            (port.host, port.port, port.protocol, port.interface, port.listening),
            (host, 4000, protocol, "192.0.2.10", True),
        )
        server.stopService()
        self.assertFalse(port.listening)
