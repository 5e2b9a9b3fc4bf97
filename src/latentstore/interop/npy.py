"""``latentstore export-npy``: a store as flat ``.npy`` files, one per array.

For tools that want ``np.load("latents.npy", mmap_mode="r")``: the codes,
scales, labels and valid flags are written unchanged (a lossless copy of the
store's contents), chunk by chunk through ``np.lib.format.open_memmap``, so
memory stays at one chunk whatever the store's size. ``metadata.json`` says
how to turn codes back into values. Per-sample columns follow: numbers as
``columns_<name>.npy``, text as ``columns_<name>.jsonl`` (line i: sample i's
text as a JSON string), bytes as one file per sample in ``columns_<name>/``
(``000000042.jpg`` for stored JPEG crops).
"""

import json
import shutil
from pathlib import Path

import numpy as np

from latentstore import format as fmt
from latentstore.errors import StoreExistsError
from latentstore.progress import Progress

METADATA_NAME = "metadata.json"



def _file_name(array: str) -> str:
    return array.replace("/", "_") + ".npy"


_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp"}


class _ColumnExport:
    """Writes one text or bytes column, chunk by chunk."""

    def __init__(self, directory: Path, spec: fmt.ColumnSpec):
        self.spec = spec
        stem = spec.array_name.replace("/", "_")
        if spec.kind == fmt.TEXT:
            self.entry = {"file": stem + ".jsonl", "kind": spec.kind}
            self.lines = open(directory / self.entry["file"], "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self.entry = {"folder": stem, "kind": spec.kind, "media_type": spec.media_type}
            self.folder = directory / stem
            self.folder.mkdir()
            self.extension = _EXTENSIONS.get(spec.media_type or "", ".bin")

    def write(self, store, start: int, stop: int) -> None:
        values = store.column(self.spec.name, np.arange(start, stop), allow_invalid=True)
        if self.spec.kind == fmt.TEXT:
            self.lines.writelines(json.dumps(text, ensure_ascii=False) + "\n" for text in values)
        else:
            for i, data in enumerate(values, start):
                (self.folder / f"{i:09d}{self.extension}").write_bytes(data)

    def close(self) -> None:
        if self.spec.kind == fmt.TEXT:
            self.lines.close()


def _dequantize_text(quant) -> str:
    if quant.scheme == "affine":
        return f"latents = float32(float64(latents) * {quant.scale!r} + {quant.offset!r})"
    return "latents = float32(latents) * float32(scales)" + ("[:, None, None, None]" if quant.granularity == "sample" else "[:, :, None, None]")


def _ids(store):
    import zarr

    return zarr.open_group(store.path, mode="r", zarr_format=3)[fmt.IDS]


def export_npy(store, directory, *, overwrite: bool = False, progress: bool = False) -> dict:
    """Write ``store`` (a path or an open :class:`~latentstore.LatentStore`) to ``.npy`` files in ``directory``.

    Returns the contents of ``metadata.json``: for each array its file,
    dtype and shape, plus the store's quantization, classes and stats.
    Refuses a non-empty ``directory`` unless ``overwrite``.
    """
    from latentstore.store.reader import open as open_store

    store = open_store(store) if isinstance(store, (str, Path)) else store
    m = store.metadata
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        if not overwrite:
            raise StoreExistsError(f"{directory} already exists and is not empty; pass overwrite=True (--overwrite) to replace it")
        shutil.rmtree(directory) if directory.is_dir() else directory.unlink()
    directory.mkdir(parents=True, exist_ok=True)

    arrays = dict(m.arrays())
    arrays.update({spec.array_name: ((m.num_samples,), spec.dtype) for spec in m.columns if not spec.variable_length})
    ids = _ids(store) if m.ids else None
    if ids is not None:
        width = max([1] + [max(map(len, ids[a:b].tolist()), default=0) for a, b in map(m.chunk_range, range(m.num_chunks))])
        arrays[fmt.IDS] = ((m.num_samples,), np.dtype(f"<U{width}"))
    outputs = {
        name: np.lib.format.open_memmap(directory / _file_name(name), mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in arrays.items()
    }
    exports = [_ColumnExport(directory, spec) for spec in m.columns if spec.variable_length]
    numeric = [spec for spec in m.columns if not spec.variable_length]
    bar = Progress(m.num_samples, "export-npy", unit="sample", enabled=progress)
    try:
        for chunk in range(m.num_chunks):
            start, stop = m.chunk_range(chunk)
            rows = slice(start, stop)
            for flip, latents_name, scales_name in ((False, fmt.LATENTS, fmt.SCALES), (True, fmt.FLIP_LATENTS, fmt.FLIP_SCALES)):
                if latents_name in outputs:
                    q, scales = store.codes(np.arange(start, stop), allow_invalid=True, flip=flip or None)
                    outputs[latents_name][rows] = q
                    if scales is not None:
                        outputs[scales_name][rows] = scales
            outputs[fmt.LABELS][rows] = store.labels[rows]
            outputs[fmt.VALID][rows] = store.valid[rows]
            if ids is not None:
                outputs[fmt.IDS][rows] = ids[rows]
            for spec in numeric:
                outputs[spec.array_name][rows] = store.column(spec.name, rows, allow_invalid=True)
            for export in exports:
                export.write(store, start, stop)
            for out in outputs.values():
                out.flush()
            bar.update(stop - start)
    finally:
        bar.close()
        outputs.clear()  # unmaps the files
        for export in exports:
            export.close()
    metadata = {
        "exported_from": store.path,
        "num_samples": m.num_samples,
        "latent_shape": list(m.latent_shape),
        "quant": m.quant.to_dict(),
        "dequantize": _dequantize_text(m.quant),
        "arrays": {
            name: {"file": _file_name(name), "dtype": np.dtype(dtype).str, "shape": list(shape)}
            for name, (shape, dtype) in arrays.items()
        } | {export.spec.array_name: export.entry for export in exports},
        "classes": list(m.classes) if m.classes is not None else None,
        "stats": m.stats,
        "encoder": m.encoder,
        "source": m.source,
        "complete": m.complete,
        "library_version": m.library_version,
    }
    (directory / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata
