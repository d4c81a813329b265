"""
docs/protocol.rst shows each message byte by byte as punchd's encoders
make it: docs/listings.py regenerates the listings, and this checks that
nobody has had to.
"""

import importlib.util
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

SCRIPT = Path(__file__).resolve().parent.parent / "docs" / "listings.py"


def loadListings():
    spec = importlib.util.spec_from_file_location("listings", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ListingTests(SynchronousTestCase):
    """
    The listings in docs/protocol.rst.
    """

    def test_documentMatchesCode(self):
        """
        Every listing in docs/protocol.rst is what docs/listings.py makes
        from the code: run it after a change to the wire format.
        """
        listings = loadListings()
        text = listings.DOCUMENT.read_text(encoding="utf-8")
        self.assertEqual(listings.rewrite(text).split("\n"), text.split("\n"))

    def test_everyListingMade(self):
        """
        There is a listing in the document for every example, and each
        starts with its title and size.
        """
        listings = loadListings()
        text = listings.DOCUMENT.read_text(encoding="utf-8")
        titles = [line for line in text.split("\n") if line.endswith(" bytes::")]
        self.assertEqual(
            titles,
            [f"{listings.title(d)}, {len(d)} bytes::" for d in listings.examples()],
        )
