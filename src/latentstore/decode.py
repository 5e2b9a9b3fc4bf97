"""Decoding stored latents back to images with the store's autoencoder.

>>> images = decode("imagenet-dcae.zarr", [0, 17, 42])  # doctest: +SKIP
>>> images.shape, images.dtype                           # doctest: +SKIP
((3, 256, 256, 3), dtype('uint8'))

The latents are decoded exactly as stored: dequantized, unscaled, never
normalised. The model is the one recorded in the store's ``encoder``
metadata (pinned to its recorded revision) unless another is given.
:func:`source_crops` finds the images the samples were encoded from and
preprocesses them the way the encoder did, for side-by-side comparison.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .errors import ModelLoadError
from .store import LatentStore

COMMAND_HELP = (
    "Decode samples of a store back to images with the store's recorded autoencoder (or --model): "
    "one PNG per sample, or one grid PNG (--grid) with the class name under each tile. --compare puts "
    "the source image's preprocessed crop beside each reconstruction and prints PSNR and SSIM."
)

#: Samples decoded together: bounds the decoder's activation memory.
DECODE_BATCH = 8
#: Source kinds whose ids are file paths relative to the source root.
FILE_SOURCES = ("imagefolder", "labeled", "unlabeled")
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
    """The :class:`~latentstore.backends.Backend` that decodes ``store``'s latents.

    ``model`` defaults to the store's recorded ``encoder.model`` at its
    recorded revision. Raises :class:`~latentstore.errors.ModelLoadError`
    when neither is there, or when the model's latents have another channel
    count than the store's.
    """
    from .backends import load_backend

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
    from .preprocess import ImageDecodeError, Preprocessing

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
        from .errors import SourceError
        from .sources import open_source

        try:
            opened = open_source(root, kind="hf", limit=source.get("limit"))
        except SourceError as exc:
            raise _Unreachable(f"the source dataset cannot be opened: {exc}") from exc
        if opened.describe().get("ids_sha256") != source.get("ids_sha256"):
            raise _Unreachable(f"the dataset at {root} is no longer the one that was encoded")
        return [opened.read(int(r))[0] for r in rows]
    raise _Unreachable(f"source kind {kind!r} cannot be read back")


def caption(store: LatentStore, index: int) -> str:
    """'#index class name' (or the label number, when the store has no class names)."""
    label = int(store.labels[index])
    classes = store.metadata.classes
    if label < 0:
        return f"#{index}"
    if classes is not None and label < len(classes):
        return f"#{index} {classes[label]}"
    return f"#{index} label {label}"


# -- command line ---------------------------------------------------------------------
def configure(parser) -> None:
    parser.add_argument("path", help="store directory or fsspec URL")
    parser.add_argument("indices", nargs="*", type=int, help="sample indices (default: the first 8 valid samples)")
    parser.add_argument("--random", type=int, metavar="K", help="decode K distinct random valid samples instead")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    parser.add_argument("--out", required=True, help="output directory (one PNG per sample), or the PNG file with --grid")
    parser.add_argument("--grid", action="store_true", help="write one grid PNG with the class name under each tile")
    parser.add_argument("--compare", action="store_true", help="show the source image's crop beside each reconstruction; print PSNR and SSIM")
    parser.add_argument("--model", help="autoencoder (hub id or local directory); default: the store's recorded model")
    parser.add_argument("--flip", action="store_true", help="decode the stored latents of the horizontally flipped images")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), help="model dtype (default: bf16 on cuda, fp32 on cpu)")


def _choose(store: LatentStore, args) -> np.ndarray:
    valid = np.flatnonzero(store.valid)
    if args.indices and args.random is not None:
        raise SystemExit("latentstore decode: error: give indices or --random K, not both")
    if args.random is not None:
        if not 0 < args.random <= len(valid):
            raise SystemExit(f"latentstore decode: error: --random takes 1 to {len(valid)} (the valid samples), got {args.random}")
        return np.random.default_rng(args.seed).choice(valid, size=args.random, replace=False)
    if args.indices:
        return np.asarray(args.indices, dtype=np.int64)
    return valid[:DEFAULT_COUNT]


def run(args) -> int:
    from .grid import make_grid

    store = _open(args.path)
    indices = _choose(store, args)
    rows = indices % max(len(store), 1)
    try:
        store.read(indices, flip=args.flip)  # bad or invalid indices fail here, before the model loads
    except IndexError as exc:
        print(f"latentstore decode: error: {exc}", file=sys.stderr)
        return 2
    backend = load_decoder(store, args.model, device=args.device, dtype=args.dtype)
    if backend.random_init:
        print(RANDOM_MODEL_BANNER, file=sys.stderr)
    images = decode(store, indices, flip=args.flip, backend=backend)
    captions = [caption(store, int(r)) for r in rows]

    crops = None
    if args.compare:
        crops, why = source_crops(store, rows, flip=args.flip)
        if crops is not None and crops.shape != images.shape:
            crops, why = None, f"the source crops are {crops.shape[1:3]}, the decoded images {images.shape[1:3]}"
        if crops is None:
            print(f"no comparison: {why}; decoding without it", file=sys.stderr)
        else:
            captions = _report_fidelity(crops, images, captions)

    if args.grid:
        tiles, texts, columns = _layout(images, crops, captions)
        if backend.random_init:  # the picture must not pass for a real decoding when shared
            decoded = range(1, len(texts), 2) if crops is not None else range(len(texts))
            texts = [f"{t}\nRANDOM MODEL" if k in decoded else t for k, t in enumerate(texts)]
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        make_grid(tiles, texts, columns=columns, column_titles=["source crop", "decoded"] if crops is not None else None).save(args.out)
        print(f"wrote {args.out} ({len(images)} samples)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    for k, row in enumerate(rows):
        path = os.path.join(args.out, f"{int(row):08d}{'_flip' if args.flip else ''}.png")
        if crops is None:
            from PIL import Image

            Image.fromarray(images[k]).save(path)
        else:
            make_grid(np.stack([crops[k], images[k]]), ["source crop", captions[k]], columns=2).save(path)
    print(f"wrote {len(rows)} PNG files to {args.out}")
    return 0


def _report_fidelity(crops: np.ndarray, images: np.ndarray, captions: list[str]) -> list[str]:
    """Print PSNR and SSIM per image; return captions with the PSNR added."""
    from .metrics import psnr, ssim

    scores = [(psnr(c, i), ssim(c, i)) for c, i in zip(crops, images)]
    print(f"{'sample':<40} {'PSNR dB':>8} {'SSIM':>7}")
    for text, (p, s) in zip(captions, scores):
        print(f"{text[:40]:<40} {p:8.2f} {s:7.4f}")
    print(f"{'mean':<40} {np.mean([p for p, _ in scores]):8.2f} {np.mean([s for _, s in scores]):7.4f}")
    return [f"{text}\nPSNR {p:.2f} dB, SSIM {s:.3f}" for text, (p, s) in zip(captions, scores)]


def _layout(images: np.ndarray, crops: np.ndarray | None, captions: list[str]):
    """Tiles, captions and columns of the grid: pairs per row when comparing."""
    if crops is None:
        return images, captions, None
    from .grid import interleave

    texts = [t for text in captions for t in (text.split("\n")[0], text.split("\n", 1)[-1])]
    return interleave(crops, images), texts, 2
