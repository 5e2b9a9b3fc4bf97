"""Decoding stored latents back to images with the store's autoencoder.

>>> images = decode("imagenet-dcae.zarr", [0, 17, 42])  # doctest: +SKIP
>>> images.shape, images.dtype                           # doctest: +SKIP
((3, 256, 256, 3), dtype('uint8'))

A bucketed (multi-aspect) store decodes each bucket's samples together (the
decoder takes one shape per batch) and gives the images back in the order
asked: one (n, H, W, 3) array when they share a shape, else a list of
(H_i, W_i, 3) arrays.

The latents are decoded exactly as stored: dequantized, unscaled, never
normalised. The model is the one recorded in the store's ``encoder``
metadata (pinned to its recorded revision) unless another is given.
:func:`source_crops` finds the images the samples were encoded from and
preprocesses them the way the encoder did, for side-by-side comparison;
:func:`stored_crops` reads the crops ``encode --store-images`` kept instead.
"""

from __future__ import annotations

import os

import numpy as np

from latentstore.errors import ModelLoadError
from latentstore.store.reader import LatentStore

#: Samples decoded together: bounds the decoder's activation memory.
DECODE_BATCH = 8
#: Source kinds whose ids are file paths relative to the source root.
FILE_SOURCES = ("imagefolder", "labeled", "unlabeled", "metadata")
DEFAULT_COUNT = 8

RANDOM_MODEL_BANNER = "\n".join(
    [
        "!" * 78,
        "!! RANDOM WEIGHTS: the decoder is a randomly initialised test model, so these",
        "!! pictures are meaningless noise-like patterns, not what the latents show.",
        "!" * 78,
    ]
)


def _open(store) -> LatentStore:
    return store if isinstance(store, LatentStore) else LatentStore(store)


def load_decoder(store, model: str | None = None, *, device=None, dtype=None):
    """The :class:`~latentstore.encoding.backends.Backend` that decodes ``store``'s latents.

    ``model`` defaults to the store's recorded ``encoder.model`` at its
    recorded revision. Raises :class:`~latentstore.errors.ModelLoadError`
    when neither is there, or when the model's latents have another channel
    count than the store's.
    """
    from latentstore.encoding.backends import load_backend

    store = _open(store)
    encoder = store.metadata.encoder or {}
    revision = None
    if model is None:
        model = encoder.get("model")
        revision = encoder.get("revision")
        if model is None:
            raise ModelLoadError(
                f"{store.path} records no encoder model; pass the autoencoder that made its latents "
                "(--model HUB_ID_OR_DIR, or model= in Python)"
            )
    backend = load_backend(model, revision=revision, device=device, dtype=dtype)
    channels = store.metadata.latent_shape[0]
    if backend.latent_channels != channels:
        raise ModelLoadError(
            f"{model!r} decodes latents of {backend.latent_channels} channels, but {store.path} holds "
            f"{channels}-channel latents of shape {store.metadata.latent_shape}; pass the model that encoded them"
        )
    return backend


def read_latents(store, indices, *, flip=False) -> list[tuple[np.ndarray, np.ndarray]]:
    """The dequantized latents of the samples ``indices``, one group per latent shape:
    ``[(positions, latents (k, C, h, w))]``, ``positions`` saying where in ``indices`` each
    sample is. A store of one shape gives one group; a bucketed store one per bucket, in the
    order the buckets first appear. Bad or invalid indices raise as :meth:`LatentStore.read` does.
    """
    store = _open(store)
    indices = np.atleast_1d(np.asarray(indices))
    if indices.dtype == bool:
        if indices.shape != (len(store),):
            store.read(indices)  # the reader's IndexError for a mask of the wrong length
        indices = np.flatnonzero(indices)
    table, bucket_of = store.bucket_table, store.bucket_indices
    if table is None or bucket_of is None or len(indices) == 0:
        return [(np.arange(len(indices)), store.read(indices, flip=flip)[0])]
    flips = np.broadcast_to(np.asarray(flip), indices.shape) if np.ndim(flip) else None
    n = len(store)
    if not np.issubdtype(indices.dtype, np.integer):
        store.read(indices[:1])  # the reader's own words for indices that are not integers
    outside = (indices < -n) | (indices >= n)
    if outside.any():
        store.read(indices[outside][:1])  # raises the reader's IndexError
    buckets = bucket_of[indices % n]
    _, first = np.unique(buckets, return_index=True)
    groups = []
    for bucket in buckets[np.sort(first)]:
        positions = np.flatnonzero(buckets == bucket)
        part_flip = flip if flips is None else flips[positions]
        groups.append((positions, store.read(indices[positions], flip=part_flip)[0]))
    return groups


def decode(store, indices, *, model: str | None = None, device=None, dtype=None, flip=False,
           backend=None) -> np.ndarray | list[np.ndarray]:
    """uint8 images of the samples ``indices`` of ``store`` (a LatentStore or a path), in the order asked.

    Returns one (n, H, W, 3) array when every image has the same shape (always, for a store of
    one latent shape), else a list of (H_i, W_i, 3) arrays (a bucketed store's samples of
    several buckets; each bucket is decoded as a group of its own, in batches of DECODE_BATCH).
    ``indices`` as for :meth:`LatentStore.read` (bad or invalid ones raise
    before any model is loaded); ``flip`` decodes the stored latents of the
    horizontally flipped images. ``backend`` reuses a decoder from
    :func:`load_decoder`; otherwise one is loaded from ``model`` (default:
    the store's recorded model), ``device`` and ``dtype``.
    """
    store = _open(store)
    groups = read_latents(store, indices, flip=flip)
    if backend is None:
        backend = load_decoder(store, model, device=device, dtype=dtype)
    if len(groups) == 1:
        return decode_latents(backend, groups[0][1])
    images: list = [None] * sum(len(positions) for positions, _ in groups)
    for positions, latents in groups:
        for k, image in zip(positions.tolist(), decode_latents(backend, latents)):
            images[k] = image
    return same_shape(images)


def same_shape(images: list[np.ndarray]) -> np.ndarray | list[np.ndarray]:
    """``images`` stacked into one array when they all have one shape, else the list itself."""
    if images and all(image.shape == images[0].shape for image in images):
        return np.stack(images)
    return images


def decode_latents(backend, latents: np.ndarray) -> np.ndarray:
    """uint8 images (n, H, W, 3) of float latents (n, C, h, w), decoded in batches of DECODE_BATCH.

    Decoders' outputs can depend on the batch size in the last bit, so
    latents that are to be compared go through here alike.
    """
    import torch

    parts = []
    for start in range(0, len(latents), DECODE_BATCH):
        pixels = backend.decode(torch.from_numpy(np.ascontiguousarray(latents[start : start + DECODE_BATCH])))
        parts.append(pixels.permute(0, 2, 3, 1).cpu().numpy())
    if not parts:
        side = latents.shape[2] * getattr(backend, "spatial_compression", 1)
        return np.empty((0, side, side, 3), np.uint8)
    return np.ascontiguousarray(np.concatenate(parts))


def source_crops(store, indices, *, flip=False) -> tuple[np.ndarray | list[np.ndarray] | None, str | None]:
    """The encoder's input crops of the samples, (n, H, W, 3) (a list of (H_i, W_i, 3) when a
    bucketed store's samples have several shapes), or ``(None, why not)``.

    Uses the store's ``source`` description, ``ids`` array and recorded
    preprocessing; works while the source images are still where they
    were encoded from. For a bucketed store every crop must have its
    bucket's shape in pixels; when the recorded preprocessing does not make
    such crops (or this latentstore cannot rebuild it), the answer is
    ``(None, why not)``, never a crop of another shape.
    """
    from latentstore.encoding.preprocess import preprocessing_from_dict
    from latentstore.errors import FormatError, ImageDecodeError

    store = _open(store)
    m = store.metadata
    source, encoder = m.source or {}, m.encoder or {}
    if not source.get("root") or not m.ids:
        return None, "the store records no source images (no source description or ids)"
    if not encoder.get("preprocessing"):
        return None, "the store does not record how its images were preprocessed"
    try:
        preprocessing = preprocessing_from_dict(encoder["preprocessing"])
    except FormatError as exc:
        return None, f"the store's preprocessing cannot be rebuilt here: {exc}"
    rows = np.atleast_1d(np.asarray(indices, dtype=np.int64)) % max(m.num_samples, 1)
    expected = _bucket_pixels(store, rows)
    if isinstance(expected, str):
        return None, expected
    ids = store.ids(rows)
    try:
        raws = _source_images(source, rows, ids)
        crops = [preprocessing.prepare(raw)[0] for raw in raws]
    except (OSError, ImageDecodeError) as exc:
        return None, f"the source is not reachable: {exc}"
    except _Unreachable as exc:
        return None, str(exc)
    if expected is not None:
        for k, (crop, shape) in enumerate(zip(crops, expected)):
            if crop.shape[:2] != shape:
                return None, (f"the recorded preprocessing makes {crop.shape[0]}x{crop.shape[1]} crops, but sample "
                              f"{int(rows[k])} was encoded as a {shape[0]}x{shape[1]} crop (its bucket); "
                              "the source image has changed since it was encoded")
    return same_shape([crop[:, ::-1] if flip else crop for crop in crops]), None


def _bucket_pixels(store: LatentStore, rows: np.ndarray) -> list[tuple[int, int]] | str | None:
    """The (H, W) pixels of each sample's bucket; None for a store of one shape; a string
    saying why when the pixel size is not recorded."""
    table, bucket_of = store.bucket_table, store.bucket_indices
    if table is None or bucket_of is None:
        return None
    compression = table.compression or (store.metadata.encoder or {}).get("spatial_compression")
    if not isinstance(compression, int) or compression < 1:
        return "the store records neither its buckets' compression nor its encoder's, so its crops' size is unknown"
    return [(h * compression, w * compression) for h, w in (table.shapes[int(b)] for b in bucket_of[rows])]


def stored_crops(store, indices, *, flip=False) -> tuple[np.ndarray | list[np.ndarray] | None, str]:
    """The crops kept by ``encode --store-images`` (n, H, W, 3) (a list of (H_i, W_i, 3) when a
    bucketed store's samples have several shapes), and what they are (``"jpeg:95"``);
    ``(None, why not)`` when the store has none."""
    import io

    from PIL import Image

    from latentstore.encoding.preprocess import IMAGE_COLUMN

    store = _open(store)
    spec = next((c for c in store.metadata.columns if c.name == IMAGE_COLUMN), None)
    if spec is None or not (spec.media_type or "").startswith("image/"):
        return None, "the store keeps no crops (encode with --store-images to keep them)"
    rows = np.atleast_1d(np.asarray(indices, dtype=np.int64)) % max(len(store), 1)
    try:
        crops = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                 for data in store.column(IMAGE_COLUMN, rows, allow_invalid=True)]
    except (OSError, ValueError) as exc:
        return None, f"the stored crops cannot be decoded: {exc}"
    return same_shape([crop[:, ::-1] if flip else crop for crop in crops]), spec.attributes.get("stored_crops", spec.media_type)


class _Unreachable(Exception):
    pass


def _source_images(source: dict, rows: np.ndarray, ids: list[str]) -> list:
    root, kind = source["root"], source.get("kind")
    if kind in FILE_SOURCES:
        paths = [os.path.join(root, i) for i in ids]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise _Unreachable(f"the source file {missing[0]} is gone ({len(missing)} of {len(paths)} missing)")
        return paths
    if kind == "hf":
        from latentstore.encoding.sources import open_source
        from latentstore.errors import SourceError

        try:
            opened = open_source(root, kind="hf", limit=source.get("limit"))
        except SourceError as exc:
            raise _Unreachable(f"the source dataset cannot be opened: {exc}") from exc
        if opened.describe().get("ids_sha256") != source.get("ids_sha256"):
            raise _Unreachable(f"the dataset at {root} is no longer the one that was encoded")
        return [opened.read(int(r))[0] for r in rows]
    raise _Unreachable(f"source kind {kind!r} cannot be read back")


#: The text column a grid shows under each tile, when the store has one.
CAPTION_COLUMN = "caption"


def caption(store: LatentStore, index: int) -> str:
    """'#index class name' (or the label number, when the store has no class names), then the
    sample's caption on the next line when the store has a ``caption`` text column."""
    label = int(store.labels[index])
    classes = store.metadata.classes
    if label < 0:
        title = f"#{index}"
    elif classes is not None and label < len(classes):
        title = f"#{index} {classes[label]}"
    else:
        title = f"#{index} label {label}"
    if store.columns.get(CAPTION_COLUMN) == "text":
        text = store.column(CAPTION_COLUMN, index, allow_invalid=True)
        if text:
            return f"{title}\n{text}"
    return title
