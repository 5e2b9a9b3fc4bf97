"""Where the tests find their files: the repository, tests/data and the photos that ship with the package."""

from pathlib import Path

import latentstore

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
IMAGES = TEST_DATA / "images"
GOLDEN = TEST_DATA / "golden"
PHOTOS = Path(latentstore.__file__).parent / "data" / "photos"
