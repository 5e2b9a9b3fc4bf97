"""``latentstore import-pt``: the command line of :mod:`latentstore.interop.pt`."""

from __future__ import annotations

import argparse

from latentstore.cli._import_options import add_common_options, common_import_arguments
from latentstore.interop.pt import IMAGENET_3GB_RANGE, import_pt, read_classes

COMMAND_HELP = """\
Import a torch.save'd list of {'id', 'latent' (uint8 tensor), 'label'} dicts,
the layout of the Imagenet.3GB dataset, into a latent store.

The uint8 codes are copied unchanged into a store with the 'affine' scheme
(x = q * (HIGH - LOW) / 255 + LOW; default range [-6.5, 6.5], Imagenet.3GB's):
lossless, and read back exactly as the dataset's own dequantization computed
in float64. --requantize stores per-sample absmax int8 instead and reports
the error that adds. The file is loaded with torch.load(weights_only=True):
a file needing arbitrary unpickling is refused.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("file", metavar="FILE", help="the .pt file (torch.save of a list of dicts)")
    parser.add_argument("out", metavar="OUT", help="store directory to create")
    add_common_options(parser, IMAGENET_3GB_RANGE)
    parser.add_argument("--classes", metavar="TXT", default=None, help="class names, one per line in label order")
    parser.add_argument("--no-mmap", action="store_true", help="read tensors into memory instead of memory-mapping the file")


def run(args) -> int:
    report = import_pt(
        args.file,
        args.out,
        classes=read_classes(args.classes) if args.classes else None,
        mmap=not args.no_mmap,
        **common_import_arguments(args),
    )
    print(report.summary())
    return 0
