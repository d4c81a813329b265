"""
Tests for the layout of punchd's modules: the core imports nothing of the
original programs' protocol.
"""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase


class CoreLayerTests(SynchronousTestCase):
    def test_coreImportsNoCompat(self):
        """
        Importing the stage manager and the peer loads no module of
        L{punchd.compat}.
        """
        loaded = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, punchd.server, punchd.peer;"
                " print(' '.join(m for m in sys.modules if m.startswith('punchd.')))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        self.assertIn("punchd.server", loaded)
        self.assertIn("punchd.peer", loaded)
        self.assertEqual([m for m in loaded if m.startswith("punchd.compat")], [])
