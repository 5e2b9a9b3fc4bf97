"""Bringing existing latent datasets in and out of a store.

- :func:`import_pt`: a ``torch.save``d list of latent dicts (Imagenet.3GB);
- :func:`import_mds`: MosaicML MDS shards of raw uint8 latents (Imagenet.int8);
- :func:`export_npy`: a store to flat ``.npy`` files for ``np.load(mmap_mode="r")``.

Imports copy the datasets' uint8 codes unchanged into a store with the
``affine`` scheme (lossless) or, on request, requantize them to absmax int8.
Each submodule imports torch (``pt`` only) or nothing heavy.
"""

from latentstore.interop._common import ImportReport, affine_spec


def import_pt(path, out, **options) -> ImportReport:
    """See :func:`latentstore.interop.pt.import_pt`."""
    from latentstore.interop.pt import import_pt as _import_pt

    return _import_pt(path, out, **options)


def import_mds(directory, out, **options) -> ImportReport:
    """See :func:`latentstore.interop.mds.import_mds`."""
    from latentstore.interop.mds import import_mds as _import_mds

    return _import_mds(directory, out, **options)


def export_npy(store, directory, **options) -> dict:
    """See :func:`latentstore.interop.npy.export_npy`."""
    from latentstore.interop.npy import export_npy as _export_npy

    return _export_npy(store, directory, **options)


__all__ = ["ImportReport", "affine_spec", "export_npy", "import_mds", "import_pt"]
