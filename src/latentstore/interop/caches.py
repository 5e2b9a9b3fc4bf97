"""``latentstore import-cache``: the float latent caches training codebases write.

Layouts (read from each codebase's public extraction code, not copied):

- ``lightningdit``: LightningDiT's ``extract_features.py`` writes
  ``*.safetensors`` shards, each with ``latents`` (N, C, H, W), ``latents_flip``
  (the mirrored images) and ``labels`` (N,), plus ``latents_stats.pt`` beside
  them; samples run through the shards in sorted file order.
- ``fast-dit``: fast-DiT's ``extract_features.py`` writes one ``.npy`` per image
  into a features folder, shape (1, C, H, W) (already ``* 0.18215``), and one
  label ``.npy`` of the same name into a labels folder; its dataset lists both
  folders sorted by name.
- ``mar``: MAR's ``main_cache.py`` writes one ``.npz`` per image into class
  folders (ImageNet's layout), with ``moments`` and ``moments_flip``: the
  posterior's mean and log-variance stacked, (2C, H, W). The mean is imported
  (``--moments all`` keeps both halves).
- ``folder``: any tree of ``.npy``/``.npz`` files, one (C, H, W) latent each, in
  class folders (labels from the folder, in sorted order) or flat (no labels):
  e.g. efficientvit's DC-AE latent folders.

Every import streams chunk by chunk (memory: a chunk of the store plus one
shard), requantizes the floats with the store's math and reports the error that
added, and keeps every sample's label and its source file (``ids``).
"""

import os
from pathlib import Path

import numpy as np

from latentstore.errors import SourceError
from latentstore.interop._common import ImportReport, run_import

LAYOUTS = ("lightningdit", "fast-dit", "mar", "folder")
FEATURE_SUFFIXES = (".npy", ".npz")


class LightningDiTCache:
    """The samples of a folder of LightningDiT safetensors shards, as one sequence."""

    def __init__(self, directory):
        from safetensors import safe_open

        self.directory = Path(directory)
        self.files = sorted(self.directory.glob("*.safetensors"))
        if not self.files:
            raise SourceError(f"no .safetensors shards in {self.directory}; pass LightningDiT's latents folder")
        counts, shapes, flips = [], set(), set()
        for path in self.files:
            with safe_open(str(path), framework="pt") as f:
                keys = set(f.keys())
                if not {"latents", "labels"} <= keys:
                    raise SourceError(f"{path} has {sorted(keys)}; a LightningDiT shard has 'latents' and 'labels'")
                latents = f.get_slice("latents").get_shape()
                counts.append(f.get_slice("labels").get_shape()[0])
                if latents[0] != counts[-1] or len(latents) != 4:
                    raise SourceError(f"{path}: latents of shape {latents} do not match {counts[-1]} labels")
                shapes.add(tuple(latents[1:]))
                flips.add("latents_flip" in keys)
        if len(shapes) != 1 or len(flips) != 1:
            raise SourceError(f"the shards of {self.directory} disagree: latent shapes {sorted(shapes)}, flips {flips}")
        self.latent_shape = shapes.pop()
        self.has_flip = flips.pop()
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.classes = None
        stats = self.directory / "latents_stats.pt"
        self.stats_file = str(stats) if stats.is_file() else None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int):
        from safetensors import safe_open

        parts: dict[str, list] = {"latents": [], "latents_flip": [], "labels": []}
        ids = []
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        for k in range(first, len(self.files)):
            if self.starts[k] >= stop:
                break
            lo, hi = max(start, self.starts[k]) - self.starts[k], min(stop, self.starts[k + 1]) - self.starts[k]
            with safe_open(str(self.files[k]), framework="pt") as f:
                for name in parts if self.has_flip else ("latents", "labels"):
                    parts[name].append(f.get_slice(name)[int(lo) : int(hi)].float().numpy() if name != "labels"
                                       else f.get_slice(name)[int(lo) : int(hi)].numpy())
            ids += [f"{self.files[k].name}:{i}" for i in range(int(lo), int(hi))]
        flip = np.concatenate(parts["latents_flip"]) if self.has_flip else None
        return np.concatenate(parts["latents"]), np.concatenate(parts["labels"]).astype(np.int64), ids, flip

    def describe(self) -> dict:
        return {"format": "LightningDiT safetensors shards", "path": str(self.directory.resolve()),
                "shards": len(self.files), "latents_stats": self.stats_file}


class FeatureFolderCache:
    """One ``.npy``/``.npz`` latent per sample: fast-DiT's features, MAR's moments, any latent folder."""

    def __init__(self, directory, *, labels_dir=None, key: str | None = None, flip_key: str | None = None,
                 moments: str | None = None, description: str = "folder of per-sample latents"):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise SourceError(f"{self.directory} is not a directory; pass the folder of latent files")
        self.files = sorted(p.relative_to(self.directory).as_posix() for p in self.directory.rglob("*")
                            if p.suffix in FEATURE_SUFFIXES and p.is_file())
        if not self.files:
            raise SourceError(f"no .npy or .npz files under {self.directory}")
        self.key, self.flip_key, self.moments, self.description = key, flip_key, moments, description
        self.labels_dir = Path(labels_dir) if labels_dir is not None else None
        folders = sorted({name.split("/")[0] for name in self.files if "/" in name})
        if self.labels_dir is None and folders and all("/" in name for name in self.files):
            self.classes = folders
            index = {name: i for i, name in enumerate(folders)}
            self.labels = np.array([index[name.split("/")[0]] for name in self.files], dtype=np.int64)
        else:
            self.classes = None
            self.labels = None
        first, flip = self._load(0)
        self.latent_shape = first.shape
        self.has_flip = flip is not None

    def __len__(self) -> int:
        return len(self.files)

    def _arrays(self, path: Path, key: str | None, flip_key: str | None = None):
        """The array ``key`` of a .npy/.npz file (its only one when None), and ``flip_key``'s where the file has it."""
        try:
            if path.suffix != ".npz":
                return np.load(path, allow_pickle=False), None
            with np.load(path) as data:
                names = data.files
                if key is None and len(names) != 1:
                    raise SourceError(f"{path} holds {names}; name the latent with --key")
                name = key or names[0]
                if name not in names:
                    raise SourceError(f"{path} holds {names}, not {name!r}")
                flip = np.asarray(data[flip_key]) if flip_key in names else None
                return np.asarray(data[name]), flip
        except SourceError:
            raise
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read {path}: {exc}") from None

    def _latent(self, raw: np.ndarray, path: Path) -> np.ndarray:
        while raw.ndim > 3 and raw.shape[0] == 1:  # fast-DiT saves (1, C, H, W)
            raw = raw[0]
        if raw.ndim != 3 or not np.issubdtype(raw.dtype, np.floating):
            raise SourceError(f"{path} holds {raw.dtype} {raw.shape}; expected one float latent (C, H, W)")
        if self.moments == "mean":
            if raw.shape[0] % 2:
                raise SourceError(f"{path}: {raw.shape[0]} channels cannot be a posterior's mean and log-variance")
            raw = raw[: raw.shape[0] // 2]
        return raw.astype(np.float32, copy=False)

    def _load(self, i: int):
        path = self.directory / self.files[i]
        latent, flip = self._arrays(path, self.key, self.flip_key)
        return self._latent(latent, path), None if flip is None else self._latent(flip, path)

    def _label(self, i: int) -> int:
        if self.labels is not None:
            return int(self.labels[i])
        if self.labels_dir is None:
            return -1
        path = self.labels_dir / self.files[i]
        value = self._arrays(path, None)[0].reshape(-1)
        if value.size != 1 or not np.issubdtype(value.dtype, np.integer):
            raise SourceError(f"{path} holds {value.dtype} {value.shape}; a label file holds one integer")
        return int(value[0])

    def read(self, start: int, stop: int):
        latents = np.empty((stop - start, *self.latent_shape), np.float32)
        flips = np.empty_like(latents) if self.has_flip else None
        for j, i in enumerate(range(start, stop)):
            latent, flip = self._load(i)
            if latent.shape != self.latent_shape or (self.has_flip and flip is None):
                raise SourceError(f"{self.directory / self.files[i]} holds a latent of {latent.shape} "
                                  f"(flip: {flip is not None}); every file must be like the first, {self.latent_shape}")
            latents[j] = latent
            if flips is not None:
                flips[j] = flip
        labels = np.array([self._label(i) for i in range(start, stop)], dtype=np.int64)
        return latents, labels, list(self.files[start:stop]), flips

    def describe(self) -> dict:
        return {"format": self.description, "path": str(self.directory.resolve()), "files": len(self.files),
                "labels": str(self.labels_dir.resolve()) if self.labels_dir else ("folders" if self.classes else None),
                "moments": self.moments}


def open_cache(layout: str, path, *, labels=None, key: str | None = None, moments: str = "mean"):
    """The cache at ``path`` in one of :data:`LAYOUTS`."""
    if layout == "lightningdit":
        return LightningDiTCache(path)
    if layout == "fast-dit":
        if labels is None:
            sibling = Path(path).parent / Path(path).name.replace("features", "labels")
            labels = sibling if sibling != Path(path) and sibling.is_dir() else None
        if labels is None:
            raise SourceError("a fast-DiT cache keeps its labels in a second folder; pass it with --labels")
        return FeatureFolderCache(path, labels_dir=labels, description="fast-DiT features and labels")
    if layout == "mar":
        return FeatureFolderCache(path, key=key or "moments", flip_key="moments_flip",
                                  moments=None if moments == "all" else "mean", description="MAR cached moments")
    if layout == "folder":
        return FeatureFolderCache(path, key=key)
    raise SourceError(f"unknown cache layout {layout!r}; choose one of {', '.join(LAYOUTS)}")


def import_cache(layout: str, path, out, *, labels=None, key: str | None = None, moments: str = "mean",
                 granularity: str = "sample", chunk_samples: int | None = None, overwrite: bool = False,
                 progress: bool = False) -> ImportReport:
    """Import a codebase's float latent cache (see :data:`LAYOUTS`) into a new store at ``out``."""
    cache = open_cache(layout, path, labels=labels, key=key, moments=moments)
    return run_import(
        os.fspath(out), cache, source_quant=None, requantize=True, progress=progress, description="import-cache",
        granularity=granularity, chunk_samples=chunk_samples, overwrite=overwrite, classes=cache.classes,
        source=cache.describe(), ids=True, flip=cache.has_flip,
    )
