"""``latentstore encode``: images to a latent store, resumable, on one GPU or many (torchrun)."""

import argparse
import json
import os
import sys

from latentstore.errors import LatentStoreError

COMMAND_HELP = """\
Encode an image collection into a latent store with SANA's DC-AE (or another
diffusers AutoencoderDC / AutoencoderKL).

SOURCE is an ImageFolder tree (labels = sorted class folders), a folder or
glob with --labels CSV, a Hugging Face save_to_disk folder or parquet files,
WebDataset tar shards (a .tar, a folder of them, or a brace pattern such as
'shards/{00000..00127}.tar', local or any fsspec URL), a folder with a
metadata.jsonl / metadata.csv (Hugging Face ImageFolder), or a plain folder of
images (labels -1). OUT is the store directory.

Captions and other per-sample fields become columns of the store, read beside
the latents (store.read(..., columns=["caption"]), LatentLoader(columns=...)).

Rerunning the same command after a crash, a kill or Ctrl-C resumes at the
first unfinished chunk; the result is byte-identical to an uninterrupted run.
Undecodable images and non-finite latents are marked invalid and listed.

On several GPUs:  torchrun --nproc-per-node 8 -m latentstore encode SOURCE OUT
"""

EPILOG = """\
examples:
  latentstore encode imagenet/train imagenet-train.zarr --flip
  latentstore encode 'imagenet/val/*.JPEG' imagenet-val.zarr \\
      --labels LOC_val_solution.csv --class-list-from imagenet-train.zarr
  torchrun --nproc-per-node 8 -m latentstore encode imagenet/train imagenet-train.zarr
  latentstore encode 'cc12m/{00000..01242}.tar' cc12m.zarr --json-fields width,height --store-images jpeg:95
  latentstore encode my-photos/ photos.zarr          # my-photos/metadata.jsonl: file_name, caption, ...
"""


def configure(parser: argparse.ArgumentParser) -> None:
    from latentstore.encoding.pipeline import DEFAULT_BATCH_SIZE

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("source", metavar="SOURCE", help="image folder, folder/glob with --labels, or Hugging Face dataset")
    parser.add_argument("out", metavar="OUT", help="store directory to create (or resume)")

    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="Hugging Face id or local save_pretrained directory (default: mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers)",
    )
    model.add_argument("--revision", default=None, help="hub branch, tag or commit to pin (the resolved commit is recorded)")
    model.add_argument("--device", default=None, help="torch device (default: cuda, cuda:LOCAL_RANK under torchrun, else cpu)")
    model.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default=None, help="model dtype (default: bf16 on CUDA, fp32 on CPU)")
    model.add_argument("--sample", action="store_true", help="AutoencoderKL: draw latents from the posterior instead of its mean")
    model.add_argument("--seed", type=int, default=0, help="seed of --sample draws (default 0)")

    images = parser.add_argument_group("images")
    images.add_argument("--resolution", type=int, default=256, help="side of the square crop, a multiple of the model's compression (default 256)")
    images.add_argument(
        "--resize",
        choices=("adm", "bicubic"),
        default="adm",
        help="adm: the ADM/DiT center_crop_arr recipe (BOX halving, then BICUBIC; default); bicubic: one BICUBIC resize",
    )
    images.add_argument(
        "--buckets", default=None, metavar="base=N|TABLE.json",
        help="multi-aspect store: base=256 for the buckets of about 256x256 pixels' area from 1:4 to 4:1 "
             "(SANA's rule), or a JSON list of [height, width] pixel sizes; each image goes to the bucket "
             "nearest its aspect ratio, resized to cover it and centre-cropped (--resolution/--resize do not apply)",
    )
    images.add_argument("--no-draft", dest="draft", action="store_false", help="decode large JPEGs at full size (slower; draft mode differs by ~1 level)")
    images.add_argument("--labels", default=None, help="CSV of 'filename,label' rows for a folder or glob SOURCE")
    images.add_argument("--class-list-from", default=None, metavar="STORE", help="number class names as in this existing store (e.g. the train store for val)")
    images.add_argument("--limit", type=int, default=None, metavar="N", help="encode only the first N images (for trials)")

    columns = parser.add_argument_group("captions and columns")
    columns.add_argument(
        "--caption-key", "--text-column", dest="caption_key", default=None, metavar="KEY",
        help="WebDataset: the caption member's extension (default txt, stored as column 'caption'); metadata folder "
             "or Hugging Face dataset: the text column every sample needs (a sample without it is invalid)",
    )
    columns.add_argument(
        "--json-fields", default=None, metavar="F[:KIND],...",
        help="WebDataset: fields of each sample's .json to keep as columns, e.g. width:int64,height:int64,aesthetic "
             "(KIND int64, float64 (default) or text)",
    )
    columns.add_argument(
        "--columns", default=None, metavar="A,B,...",
        help="metadata folder or Hugging Face dataset: the columns to carry (default: every text and numeric column)",
    )
    columns.add_argument(
        "--store-images", default=None, metavar="FORMAT[:Q]",
        help="keep each preprocessed crop in the bytes column 'image': jpeg:95, png or webp:90 (for REPA-style "
             "recipes and decode --compare without the source)",
    )

    store = parser.add_argument_group("store")
    store.add_argument("--flip", action="store_true", help="also store the latents of the horizontally flipped images (flip/)")
    store.add_argument("--chunk-samples", type=int, default=None, help="samples per chunk (default: ~32 MiB of latents, 16384 for (32, 8, 8))")
    store.add_argument("--granularity", choices=("sample", "channel"), default="sample", help="one float16 scale per sample (default) or per sample and channel")
    store.add_argument("--overwrite", action="store_true", help="replace an existing store at OUT instead of resuming or refusing")

    run_group = parser.add_argument_group("running")
    run_group.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help=f"images per encoder batch (default {DEFAULT_BATCH_SIZE})")
    run_group.add_argument("--workers", type=int, default=None, help="decoding processes per GPU (default: CPU cores / processes per node; 0 = in-process)")
    run_group.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run_group.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args) -> int:
    from latentstore.encoding.pipeline import encode

    options = vars(args).copy()
    source, out, as_json = options.pop("source"), options.pop("out"), options.pop("json")
    try:
        summary = encode(source, out, **options)
    except ValueError as e:
        if isinstance(e, LatentStoreError):
            raise  # the CLI prints it
        # Settings the model or preprocessing rejected (e.g. the resolution).
        print(f"latentstore encode: error: {e}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary.to_dict(), indent=2) if as_json else str(summary))
    return 0
