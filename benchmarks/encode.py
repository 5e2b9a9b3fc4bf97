"""Encoding speed: preprocessing per worker, the tiny-model pipeline, and the full-size DC-AE.

    python benchmarks/encode.py               # preprocessing + tiny-model pipeline on the CPU
    python benchmarks/encode.py --full-size   # + full-size DC-AE encoder, random weights
    python benchmarks/encode.py --smoke       # seconds; what tests/test_encode.py runs

(a) Preprocessing, one process, on the sample photos (decoded from bytes in
    memory): the ADM recipe with JPEG draft decoding (what encode does by
    default) against full decoding (the reference, 1.00x), and the plain
    bicubic resize either way. Images/s here is what one DataLoader worker
    delivers.
(b) End to end, ``latentstore.encode`` of the photos with the tiny randomly
    initialised DC-AE on the CPU (its latents are meaningless; it measures
    the pipeline: workers, batching, quantization, chunk writes), against
    (a)'s rate for the same recipe.
(c) ``--full-size``: ``AutoencoderDC`` built from the SANA DC-AE f32c32
    config (below) with RANDOM weights, so the FLOPs are the real model's
    and the latents mean nothing. On CUDA it times encode in bf16 and fp32
    at batch 64/128/256 (256 px); on a CPU it runs batch 1 and 2 in fp32 to
    prove the mode works and says that the GPU figures were not measured.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report  # noqa: E402

PHOTOS = Path(latentstore.__file__).parent / "data" / "photos"

#: SANA's DC-AE f32c32 (mit-han-lab/dc-ae-f32c32-sana-1.0/1.1-diffusers) as
#: diffusers' scripts/convert_dcae_to_diffusers.py builds it. SANA 1.1
#: changed only the decoder ("improved decoder"); the encoder, the part
#: timed here, is the same.
SANA_DC_AE_CONFIG = dict(
    in_channels=3,
    latent_channels=32,
    attention_head_dim=32,
    encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
    encoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
    decoder_block_out_channels=(128, 256, 512, 512, 1024, 1024),
    encoder_layers_per_block=(2, 2, 2, 3, 3, 3),
    decoder_layers_per_block=(3, 3, 3, 3, 3, 3),
    encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
    decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
    downsample_block_type="conv",
    upsample_block_type="interpolate",
    decoder_norm_types="rms_norm",
    decoder_act_fns="silu",
    scaling_factor=0.41407,
)


def photo_bytes() -> list[bytes]:
    return [p.read_bytes() for p in sorted(PHOTOS.glob("*/*")) if p.is_file()]


def preprocessing_rates(images: list[bytes], resolution: int, repeats: int) -> dict[tuple[str, bool], float]:
    """Images/s of one process for each (resize, draft) recipe."""
    from latentstore.encoding.preprocess import Preprocessing

    rates = {}
    for resize in ("adm", "bicubic"):
        for draft in (False, True):
            recipe = Preprocessing(resolution=resolution, resize=resize, draft=draft)
            rates[resize, draft] = _report.best_rate(
                lambda: [recipe(raw) for raw in images], len(images), calls=1, repeats=repeats
            )
    return rates


def pipeline_rate(directory: Path, resolution: int, copies: int, workers: int, batch_size: int):
    """(images/s of latentstore.encode with the tiny model, samples); model loading excluded."""
    from latentstore.encoding.backends import save_tiny_model

    tree = directory / "tree"
    for k in range(copies):  # more images than the 16 photos, same content
        shutil.copytree(PHOTOS, tree / f"copy{k}", dirs_exist_ok=True)
    model = save_tiny_model(directory / "tiny", "dc")
    options = dict(model=model, resolution=resolution, device="cpu", workers=workers, batch_size=batch_size,
                   chunk_samples=batch_size * 2, progress=False, overwrite=True)
    latentstore.encode(tree, directory / "warm.zarr", limit=batch_size, **options)  # imports, first-use costs
    started = time.perf_counter()
    summary = latentstore.encode(tree, directory / "bench.zarr", **options)
    seconds = time.perf_counter() - started
    if summary.valid != summary.samples:
        raise RuntimeError(f"the benchmark images failed to encode: {summary.failures}")
    return summary.samples / seconds, summary.samples


def full_size_rates(batches: list[int], dtypes: list[str], resolution: int, repeats: int):
    """{(dtype, batch): images/s} of the full-size encoder on the best device here."""
    import diffusers
    import torch

    diffusers.utils.logging.set_verbosity_error()  # .to(dtype) of a random model warns about checkpoints
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    names = {"bf16": torch.bfloat16, "fp32": torch.float32}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = diffusers.AutoencoderDC(**SANA_DC_AE_CONFIG).eval().requires_grad_(False)
    params = sum(p.numel() for p in model.encoder.parameters())
    rates = {}
    for dtype in dtypes:
        net = model.to(device, names[dtype])
        for batch in batches:
            x = torch.rand(batch, 3, resolution, resolution, device=device, dtype=names[dtype]) * 2 - 1

            def step():
                with torch.inference_mode():
                    net.encode(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()

            rates[dtype, batch] = _report.best_rate(step, batch, calls=1, repeats=repeats)
    return device, params, rates


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--copies", type=int, default=8, help="copies of the 16 photos for the pipeline run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: on a loaded machine more threads spin-wait and run far slower)",
    )
    parser.add_argument("--full-size", action="store_true", help="also time the full-size DC-AE encoder")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for tests")
    parser.add_argument("--results-dir", default=None)
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else 3
    if args.smoke:
        args.copies, args.workers, args.batch_size, args.resolution = 1, 1, 4, 64

    import torch

    torch.set_num_threads(args.threads)
    images = photo_bytes()
    pre = preprocessing_rates(images, args.resolution, repeats)
    reference = pre["adm", False]
    sections = [
        f"# Encoding speed\n\n{_report.machine_line()}; `python benchmarks/encode.py "
        + " ".join(argv if argv is not None else sys.argv[1:])
        + "`",
        f"## (a) Preprocessing, one worker process, {len(images)} sample photos at {args.resolution} px\n\n"
        + _report.markdown_table(
            ["recipe", "JPEG decode", "images/s", "vs ADM full decode"],
            [
                [resize, "draft" if draft else "full", f"{rate:,.1f}", f"{rate / reference:.2f}x"]
                for (resize, draft), rate in pre.items()
            ],
        ),
    ]

    with tempfile.TemporaryDirectory() as tmp:
        rate, samples = pipeline_rate(Path(tmp), args.resolution, args.copies, args.workers, args.batch_size)
    sections.append(
        f"## (b) End to end on the CPU with the TINY RANDOM DC-AE ({samples} images, "
        f"{args.workers} workers, batch {args.batch_size}, {args.threads} torch thread(s))\n\n"
        "The tiny model's latents are meaningless; this measures the pipeline, not DC-AE.\n\n"
        + _report.markdown_table(
            ["run", "images/s", "vs one worker's preprocessing (ADM, draft)"],
            [["latentstore.encode", f"{rate:,.1f}", f"{rate / pre['adm', True]:.2f}x"]],
        )
    )

    if args.full_size:
        cuda = torch.cuda.is_available()
        batches = [64, 128, 256] if cuda else [1, 2]
        dtypes = ["bf16", "fp32"] if cuda else ["fp32"]
        device, params, rates = full_size_rates(batches, dtypes, args.resolution, 1 if not cuda else repeats)
        reference = rates[dtypes[-1], batches[0]]
        text = (
            f"## (c) Full-size DC-AE f32c32 encoder, RANDOM weights ({params / 1e6:.1f} M encoder parameters), "
            f"{args.resolution} px on {device}\n\n"
            + _report.markdown_table(
                ["dtype", "batch", "images/s", f"vs {dtypes[-1]} batch {batches[0]}"],
                [[d, b, f"{r:,.2f}", f"{r / reference:.2f}x"] for (d, b), r in rates.items()],
            )
        )
        if not cuda:
            text += (
                "\n\nNo CUDA device here: these are CPU figures at batch 1-2 to prove the mode runs. "
                "The GPU figures (bf16 and fp32 at batch 64/128/256) were NOT measured in this run."
            )
        sections.append(text)

    report = "\n\n".join(sections)
    print(report)
    if not args.smoke:
        print(f"\nsaved to {_report.save('encode', report, args.results_dir)}")
    return report


if __name__ == "__main__":
    main()
