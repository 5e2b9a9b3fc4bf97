"""Decoding stored latents back to images with the store's autoencoder.

>>> images = decode("imagenet-dcae.zarr", [0, 17, 42])  # doctest: +SKIP
>>> images.shape, images.dtype                           # doctest: +SKIP
((3, 256, 256, 3), dtype('uint8'))

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


def decode(store, indices, *, model: str | None = None, device=None, dtype=None, flip=False, backend=None) -> np.ndarray:
    """uint8 images (n, H, W, 3) of the samples ``indices`` of ``store`` (a LatentStore or a path).

    ``indices`` as for :meth:`LatentStore.read` (bad or invalid ones raise
    before any model is loaded); ``flip`` decodes the stored latents of the
    horizontally flipped images. ``backend`` reuses a decoder from
    :func:`load_decoder`; otherwise one is loaded from ``model`` (default:
    the store's recorded model), ``device`` and ``dtype``.
    """
    store = _open(store)
    latents, _ = store.read(np.atleast_1d(np.asarray(indices)), flip=flip)
    if backend is None:
        backend = load_decoder(store, model, device=device, dtype=dtype)
    return decode_latents(backend, latents)


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


def source_crops(store, indices, *, flip=False) -> tuple[np.ndarray | None, str | None]:
    """The encoder's input crops (n, H, W, 3) of the samples, or ``(None, why not)``.

    Uses the store's ``source`` description, ``ids`` array and recorded
    preprocessing; works while the source images are still where they
    were encoded from.
    """
    from latentstore.encoding.preprocess import Preprocessing
    from latentstore.errors import ImageDecodeError

    store = _open(store)
    m = store.metadata
    source, encoder = m.source or {}, m.encoder or {}
    if not source.get("root") or not m.ids:
        return None, "the store records no source images (no source description or ids)"
    if not encoder.get("preprocessing"):
        return None, "the store does not record how its images were preprocessed"
    preprocessing = Preprocessing.from_dict(encoder["preprocessing"])
    rows = np.atleast_1d(np.asarray(indices, dtype=np.int64)) % max(m.num_samples, 1)
    ids = store.ids(rows)
    try:
        raws = _source_images(source, rows, ids)
        crops = np.stack([preprocessing(raw) for raw in raws])
    except (OSError, ImageDecodeError) as exc:
        return None, f"the source is not reachable: {exc}"
    except _Unreachable as exc:
        return None, str(exc)
    return (crops[:, :, ::-1] if flip else crops), None


def stored_crops(store, indices, *, flip=False) -> tuple[np.ndarray | None, str]:
    """The crops kept by ``encode --store-images`` (n, H, W, 3), and what they are (``"jpeg:95"``);
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
        crops = np.stack([np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                          for data in store.column(IMAGE_COLUMN, rows, allow_invalid=True)])
    except (OSError, ValueError) as exc:
        return None, f"the stored crops cannot be decoded: {exc}"
    return (crops[:, :, ::-1] if flip else crops), spec.attributes.get("stored_crops", spec.media_type)


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
