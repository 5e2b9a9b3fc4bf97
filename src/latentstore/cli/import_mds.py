"""``latentstore import-mds``: the command line of :mod:`latentstore.interop.mds`."""

from __future__ import annotations

import argparse

from latentstore.cli._import_options import add_common_options, common_import_arguments
from latentstore.interop.mds import IMAGENET_INT8_RANGE, IMAGENET_INT8_SHAPE, import_mds

COMMAND_HELP = """\
Import MosaicML MDS shards (a directory with index.json and shard.NNNNN.mds
files, optionally .zstd/.gz/.bz2 compressed) holding raw uint8 latents, the
layout of the Imagenet.int8 dataset, into a latent store.

The codes are copied unchanged into a store with the 'affine' scheme
(x = q * (HIGH - LOW) / 255 + LOW; default range [-12, 12], Imagenet.int8's
(x / 255 - 0.5) * 24): lossless. Class names come from the label_as_text
column. --requantize stores per-sample absmax int8 and reports the error.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("directory", metavar="DIR", help="directory holding index.json and the shard files")
    parser.add_argument("out", metavar="OUT", help="store directory to create")
    add_common_options(parser, IMAGENET_INT8_RANGE)
    parser.add_argument("--shape", nargs="+", type=int, default=list(IMAGENET_INT8_SHAPE), metavar="N", help="latent shape, e.g. 4 32 32 (default)")
    parser.add_argument("--latent-column", default="vae_output", help="column of raw uint8 latents (default vae_output)")
    parser.add_argument("--label-column", default="label", help="column of class indices, '' for none (default label)")
    parser.add_argument("--class-column", default="label_as_text", help="column of class names, '' for none (default label_as_text)")


def run(args) -> int:
    report = import_mds(
        args.directory,
        args.out,
        latent_shape=args.shape,
        latent_column=args.latent_column,
        label_column=args.label_column,
        class_column=args.class_column,
        **common_import_arguments(args),
    )
    print(report.summary())
    return 0
