"""``latentstore demo``: the whole pipeline on the photos shipped with the project.

Encodes the 16 sample photos (class folders in ``latentstore/data/photos``,
captioned by its ``metadata.jsonl``, the Hugging Face ImageFolder convention)
into a captioned store, shows it as ``latentstore info`` does, reads it back,
decodes it, and writes ``grid.png``: for each photo the original crop with its
caption, the decoding of its float32 latents, and the decoding of the int8
latents from the store, with PSNR under each. It prints
what each image costs in bytes as JPEG, as float32 latents and in the store.

It uses SANA's DC-AE when it can be loaded. Without it (no network, no local
copy) it says so loudly and carries on with a tiny randomly initialised
DC-AE, so that every step still runs; the pictures are then meaningless.
"""

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from latentstore.errors import ModelLoadError

COMMAND_HELP = (
    "Encode the sample photos shipped with latentstore, read them back, decode them, and write a "
    "comparison grid (original | decoded from float latents | decoded from the int8 store)."
)

BANNER = "!" * 78


def sample_photos() -> Path:
    """The ImageFolder tree of sample photos installed with the package."""
    return Path(str(resources.files("latentstore") / "data" / "photos"))


@dataclass
class DemoResult:
    store: Path
    grid: Path
    random_model: bool
    psnr_float: list[float]
    psnr_int8: list[float]
    psnr_int8_vs_float: list[float]
    bytes_per_image: dict[str, float]


def _say(text: str = "") -> None:
    print(text, flush=True)


def _backend_or_tiny(model: str, out: Path, device, dtype):
    """The real model if it loads; otherwise, loudly, a tiny random DC-AE saved under ``out``."""
    from latentstore.encoding.backends import load_backend, save_tiny_model

    try:
        return load_backend(model, device=device, dtype=dtype), model
    except ModelLoadError as exc:
        tiny = save_tiny_model(out / "tiny-random-dc-ae", "dc", seed=0)
        _say(BANNER)
        _say(f"!! Could not load {model}:")
        _say(f"!!   {exc}")
        _say("!! To use the real DC-AE, download it where there is network access:")
        _say(f"!!   huggingface-cli download {model} --local-dir DC-AE")
        _say("!! and run: latentstore demo --model DC-AE")
        _say("!! Carrying on with a TINY RANDOMLY INITIALISED DC-AE so that every step runs:")
        _say("!! the pictures below are MEANINGLESS (noise in, noise out).")
        _say(BANNER)
        return load_backend(tiny, device=device, dtype=dtype), tiny


def run_demo(out, *, model: str | None = None, device=None, dtype=None, resolution: int = 256, workers: int = 0) -> DemoResult:
    """Run the demo into directory ``out``; returns what it measured."""
    import torch

    from latentstore.encoding.backends import DEFAULT_MODEL
    from latentstore.encoding.decoding import decode_latents, source_crops
    from latentstore.encoding.pipeline import encode
    from latentstore.inspection import info
    from latentstore.inspection.grid import interleave, make_grid
    from latentstore.inspection.metrics import psnr
    from latentstore.store.reader import LatentStore

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = sample_photos()
    if device is None and not torch.cuda.is_available():
        device = "cpu"
        _say("no CUDA device: running on the CPU (about 2 s per image with the full DC-AE)")
    backend, model_path = _backend_or_tiny(model or DEFAULT_MODEL, out, device, dtype)
    random_model = bool(backend.metadata().get("random_init"))

    _say(f"1. encoding {photos} with {model_path}")
    summary = encode(
        photos,
        out / "photos.zarr",
        model=str(model_path),
        resolution=resolution,
        batch_size=8,
        workers=workers,
        device=str(backend.device),
        dtype=str(backend.dtype).removeprefix("torch."),
        overwrite=True,
    )
    _say(str(summary))
    store = LatentStore(out / "photos.zarr")
    _say("   the store, as 'latentstore info' shows it (the captions of photos/metadata.jsonl are its columns):")
    for line in info.format_text(info.describe(store)).splitlines():
        _say(f"   | {line}")

    _say("2. reading the store back and decoding")
    indices = np.flatnonzero(store.valid)
    crops, why_not = source_crops(store, indices)
    if crops is None:
        raise RuntimeError(f"the demo cannot find its own source photos again: {why_not}")
    pixels = torch.from_numpy(crops).permute(0, 3, 1, 2)
    float_latents = np.concatenate(
        [backend.encode(pixels[i : i + 8]).float().cpu().numpy() for i in range(0, len(pixels), 8)]
    )
    int8_latents, _ = store.read(indices)
    from_float = decode_latents(backend, float_latents)
    from_int8 = decode_latents(backend, int8_latents)

    psnr_float = [psnr(c, d) for c, d in zip(crops, from_float)]
    psnr_int8 = [psnr(c, d) for c, d in zip(crops, from_int8)]
    psnr_between = [psnr(f, d) for f, d in zip(from_float, from_int8)]
    classes = store.classes or ()
    warning = "\nRANDOM MODEL: meaningless" if random_model else ""
    captions = []
    texts = store.column("caption", indices) if "caption" in store.columns else [""] * len(indices)
    for i, row in enumerate(indices):
        name = classes[store.labels[row]] if store.labels[row] >= 0 else f"#{row}"
        if texts[i]:
            name = f"{name}: {texts[i]}"
        captions += [
            name,
            f"PSNR {psnr_float[i]:.1f} dB{warning}",
            f"PSNR {psnr_int8[i]:.1f} dB, {psnr_between[i]:.1f} vs float{warning}",
        ]
    grid = make_grid(
        interleave(crops, from_float, from_int8),
        captions,
        columns=3,
        column_titles=["original crop", "from float32 latents", "from the int8 store"],
    )
    grid_path = out / "grid.png"
    grid.save(grid_path)

    jpeg_bytes = np.mean([p.stat().st_size for p in photos.rglob("*.JPEG")])
    latent_values = int(np.prod(store.latent_shape))
    store_bytes = info.bytes_on_disk(store.path) / len(store)
    costs = {
        "source JPEG": float(jpeg_bytes),
        "float32 latents": float(latent_values * 4),
        "int8 store (on disk, all arrays)": float(store_bytes),
        "int8 store (codes + scale)": float(latent_values + 2),
    }
    _say("3. what an image costs")
    for name, nbytes in costs.items():
        _say(f"   {name:<34} {nbytes:>10,.0f} bytes   ({jpeg_bytes / nbytes:5.1f}x smaller than the JPEG)")
    _say(
        f"   PSNR against the original crop: {np.mean(psnr_float):.2f} dB from float latents, "
        f"{np.mean(psnr_int8):.2f} dB from the int8 store; int8 vs float decodings: {np.mean(psnr_between):.2f} dB"
    )
    _say(f"   grid: {grid_path}")
    if random_model:
        _say(BANNER)
        _say("!! These figures and pictures come from a RANDOMLY INITIALISED test model and")
        _say("!! mean nothing about DC-AE's quality. Run with --model pointing at the real")
        _say("!! weights (see above) for meaningful ones.")
        _say(BANNER)
    return DemoResult(
        store=out / "photos.zarr",
        grid=grid_path,
        random_model=random_model,
        psnr_float=psnr_float,
        psnr_int8=psnr_int8,
        psnr_int8_vs_float=psnr_between,
        bytes_per_image=costs,
    )


def configure(parser) -> None:
    parser.add_argument("--out", default="demo-output", help="directory for the store and grid.png (default: demo-output)")
    parser.add_argument(
        "--model",
        default=None,
        help="autoencoder: Hugging Face id or local save_pretrained directory "
        "(default: SANA's DC-AE; a tiny random model stands in when it cannot be loaded)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: CUDA when available, else CPU)")
    parser.add_argument("--dtype", default=None, choices=["fp32", "fp16", "bf16"], help="model dtype")
    parser.add_argument("--resolution", type=int, default=256, help="image size in pixels (default 256)")


def run(args) -> int:
    result = run_demo(args.out, model=args.model, device=args.device, dtype=args.dtype, resolution=args.resolution)
    return 0 if result.grid.exists() else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(__import__("argparse").Namespace(out="demo-output", model=None, device=None, dtype=None, resolution=256)))
