"""``latentstore import-cache``: the command line of :mod:`latentstore.interop.caches`."""

from __future__ import annotations

import argparse

from latentstore.interop.caches import LAYOUTS, import_cache, open_cache

COMMAND_HELP = """\
Import the float latent cache a training codebase already wrote into a store,
streaming chunk by chunk: LightningDiT's safetensors shards (latents,
latents_flip, labels), fast-DiT's per-image .npy features with a labels folder,
MAR's per-image .npz moments (the posterior mean; flips from moments_flip), or
any folder of .npy/.npz latents (labels from class folders). The floats are
quantized to absmax int8 with the store's math and the error that adds is
printed; every sample keeps its label and its source file (ids).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("layout", choices=LAYOUTS, help="which codebase wrote the cache")
    parser.add_argument("path", metavar="CACHE", help="the cache folder (LightningDiT's shards, fast-DiT's features, ...)")
    parser.add_argument("out", metavar="OUT", help="store directory to create")
    parser.add_argument("--labels", metavar="DIR", default=None,
                        help="fast-dit: the labels folder (default: the features folder's sibling named *labels*)")
    parser.add_argument("--key", default=None, help="the array to read from .npz files (mar: moments)")
    parser.add_argument("--moments", choices=("mean", "all"), default="mean",
                        help="mar: import the posterior mean (default) or mean and log-variance")
    parser.add_argument("--granularity", choices=("sample", "channel"), default="sample", help="absmax scale per sample or per channel")
    parser.add_argument("--chunk-samples", type=int, default=None, help="samples per chunk (default: the power of two giving ~32 MiB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store at OUT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    cache = open_cache(args.layout, args.path, labels=args.labels, key=args.key, moments=args.moments)
    print(f"found {len(cache):,} samples of {tuple(cache.latent_shape)} float latents"
          f"{', with flips' if cache.has_flip else ''}"
          f"{f', {len(cache.classes)} classes' if cache.classes else ''} in {args.path}")
    report = import_cache(args.layout, args.path, args.out, labels=args.labels, key=args.key, moments=args.moments,
                          granularity=args.granularity, chunk_samples=args.chunk_samples, overwrite=args.overwrite,
                          progress=not args.no_progress)
    print(report.summary())
    stats = report.source.get("latents_stats")
    if stats:
        print(f"  LightningDiT's stats: normalize=Normalization.from_stats(latentstore.torch.load_stats({stats!r}))")
    return 0
