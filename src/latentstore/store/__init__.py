"""The store: opening and reading (:mod:`.reader`, over :mod:`.mapped` chunk
files), writing whole chunks (:mod:`.writer`), epoch orders
(:mod:`.sampling`) and exact per-channel moments (:mod:`.stats`).

Needs numpy and zarr only; imports the quantization layer and nothing above.
"""

from latentstore.store.reader import LatentStore, open
from latentstore.store.writer import StoreWriter, create

__all__ = ["LatentStore", "StoreWriter", "create", "open"]
