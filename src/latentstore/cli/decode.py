"""``latentstore decode``: the command line of :mod:`latentstore.encoding.decoding`."""

from __future__ import annotations

import os
import sys

import numpy as np

from latentstore.encoding.decoding import (
    DEFAULT_COUNT,
    RANDOM_MODEL_BANNER,
    _open,
    caption,
    decode,
    load_decoder,
    read_latents,
    source_crops,
    stored_crops,
)
from latentstore.store.reader import LatentStore

COMMAND_HELP = (
    "Decode samples of a store back to images with the store's recorded autoencoder (or --model): "
    "one PNG per sample, or one grid PNG (--grid) with the class name under each tile. --compare puts "
    "the source image's preprocessed crop beside each reconstruction and prints PSNR and SSIM (the crops "
    "kept by encode --store-images when the source images are not at hand)."
)


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
    from latentstore.inspection.grid import make_grid

    store = _open(args.path)
    indices = _choose(store, args)
    rows = indices % max(len(store), 1)
    try:
        read_latents(store, indices, flip=args.flip)  # bad or invalid indices fail here, before the model loads
    except IndexError as exc:
        print(f"latentstore decode: error: {exc}", file=sys.stderr)
        return 2
    backend = load_decoder(store, args.model, device=args.device, dtype=args.dtype)
    if backend.random_init:
        print(RANDOM_MODEL_BANNER, file=sys.stderr)
    images = decode(store, indices, flip=args.flip, backend=backend)
    captions = [caption(store, int(r)) for r in rows]

    crops, title = None, "source crop"
    if args.compare:
        crops, why = source_crops(store, rows, flip=args.flip)
        if crops is None:
            crops, kept = stored_crops(store, rows, flip=args.flip)
            if crops is None:
                why = f"{why}, and {kept}"
            else:
                title = f"stored crop ({kept})"
                print(f"the source images are not at hand ({why}); comparing with the {kept} crops kept in the store",
                      file=sys.stderr)
        mismatch = None if crops is None else _shape_mismatch(crops, images, rows)
        if mismatch is not None:
            crops, why = None, mismatch
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
        make_grid(tiles, texts, columns=columns, column_titles=[title, "decoded"] if crops is not None else None).save(args.out)
        print(f"wrote {args.out} ({len(images)} samples)")
        return 0
    os.makedirs(args.out, exist_ok=True)
    for k, row in enumerate(rows):
        path = os.path.join(args.out, f"{int(row):08d}{'_flip' if args.flip else ''}.png")
        if crops is None:
            from PIL import Image

            Image.fromarray(images[k]).save(path)
        else:
            make_grid([crops[k], images[k]], [title, captions[k]], columns=2).save(path)
    print(f"wrote {len(rows)} PNG files to {args.out}")
    return 0


def _shape_mismatch(crops, images, rows: np.ndarray) -> str | None:
    """Why the crops cannot be compared with the decoded images (another shape), or None."""
    for crop, image, row in zip(crops, images, rows.tolist()):
        if crop.shape != image.shape:
            return f"the source crop of sample {row} is {crop.shape[:2]}, its decoded image {image.shape[:2]}"
    return None


def _report_fidelity(crops, images, captions: list[str]) -> list[str]:
    """Print PSNR and SSIM per image; return captions with the PSNR added."""
    from latentstore.inspection.metrics import psnr, ssim

    scores = [(psnr(c, i), ssim(c, i)) for c, i in zip(crops, images)]
    print(f"{'sample':<40} {'PSNR dB':>8} {'SSIM':>7}")
    for text, (p, s) in zip(captions, scores):
        print(f"{text[:40]:<40} {p:8.2f} {s:7.4f}")
    print(f"{'mean':<40} {np.mean([p for p, _ in scores]):8.2f} {np.mean([s for _, s in scores]):7.4f}")
    return [f"{text}\nPSNR {p:.2f} dB, SSIM {s:.3f}" for text, (p, s) in zip(captions, scores)]


def _layout(images, crops, captions: list[str]):
    """Tiles, captions and columns of the grid: pairs per row when comparing (images and
    crops are arrays, or lists of images of several shapes)."""
    if crops is None:
        return images, captions, None
    from latentstore.inspection.grid import interleave

    texts = [t for text in captions for t in (text.split("\n")[0], text.split("\n", 1)[-1])]
    return interleave(crops, images), texts, 2
