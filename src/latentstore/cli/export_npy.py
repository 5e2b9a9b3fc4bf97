"""``latentstore export-npy``: the command line of :mod:`latentstore.interop.npy`."""

from __future__ import annotations

import argparse

from latentstore.interop.npy import METADATA_NAME, export_npy

COMMAND_HELP = """\
Export a store to flat .npy files in DIR, ready for np.load(mmap_mode="r"):
latents.npy (the codes, unchanged), scales.npy (absmax stores), labels.npy,
valid.npy, flip_latents.npy / flip_scales.npy (stores with flip latents),
ids.npy (stores with ids), the per-sample columns (numbers as
columns_NAME.npy, text as columns_NAME.jsonl with one JSON string per sample,
bytes as one file per sample in columns_NAME/) and metadata.json
(quantization, classes, stats, and the formula that turns codes into latents).
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("store", metavar="STORE", help="store directory or fsspec URL")
    parser.add_argument("directory", metavar="DIR", help="directory to write the .npy files to")
    parser.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty DIR")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    metadata = export_npy(args.store, args.directory, overwrite=args.overwrite, progress=not args.no_progress)
    files = ", ".join(a.get("file") or a["folder"] + "/" for a in metadata["arrays"].values())
    print(f"exported {metadata['num_samples']:,} samples to {args.directory}: {files}, {METADATA_NAME}")
    return 0
