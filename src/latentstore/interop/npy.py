"""``latentstore export-npy``: a store as flat ``.npy`` files, one per array.

For tools that want ``np.load("latents.npy", mmap_mode="r")``: the codes,
scales, labels and valid flags are written unchanged (a lossless copy of the
store's contents), chunk by chunk through ``np.lib.format.open_memmap``, so
memory stays at one chunk whatever the store's size. ``metadata.json`` says
how to turn codes back into values.
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
    ids = _ids(store) if m.ids else None
    if ids is not None:
        width = max([1] + [max(map(len, ids[a:b].tolist()), default=0) for a, b in map(m.chunk_range, range(m.num_chunks))])
        arrays[fmt.IDS] = ((m.num_samples,), np.dtype(f"<U{width}"))
    outputs = {
        name: np.lib.format.open_memmap(directory / _file_name(name), mode="w+", dtype=dtype, shape=shape)
        for name, (shape, dtype) in arrays.items()
    }
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
            for out in outputs.values():
                out.flush()
            bar.update(stop - start)
    finally:
        bar.close()
        outputs.clear()  # unmaps the files
    metadata = {
        "exported_from": store.path,
        "num_samples": m.num_samples,
        "latent_shape": list(m.latent_shape),
        "quant": m.quant.to_dict(),
        "dequantize": _dequantize_text(m.quant),
        "arrays": {
            name: {"file": _file_name(name), "dtype": np.dtype(dtype).str, "shape": list(shape)}
            for name, (shape, dtype) in arrays.items()
        },
        "classes": list(m.classes) if m.classes is not None else None,
        "stats": m.stats,
        "encoder": m.encoder,
        "source": m.source,
        "complete": m.complete,
        "library_version": m.library_version,
    }
    (directory / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
    return metadata
