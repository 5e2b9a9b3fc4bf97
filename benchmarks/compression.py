"""Compression against fidelity: every way of storing latents, side by side.

    python benchmarks/compression.py                          # synthetic latents (default)
    python benchmarks/compression.py --store PATH             # a store's latents
    python benchmarks/compression.py --images DIR --model M   # encode an image folder
    python benchmarks/compression.py --samples 4096 --quick   # quicker

Latent sources, named in every table:

- ``--synthetic`` (default): ``benchmarks/synthetic.py``'s heavy-tailed stand-ins
  for DC-AE latents, not autoencoder output;
- ``--store PATH``: the first N valid samples of a store; its *dequantized*
  latents are the reference, so errors are relative to them, not to the
  float latents the store was made from;
- ``--images DIR --model M``: the folder's images, centre-cropped and encoded
  with ``latentstore.encoding.backends.load_backend(M)``. This calls the backend and
  ``latentstore.encoding.preprocess`` directly rather than ``latentstore.encode``,
  which writes int8 stores: the float latents are the reference here.

Each scheme gets bytes per sample, the projected size of ImageNet-1k train
(1,281,167 samples), MSE, max |error|, SNR in dB and the fraction of values
it clips (``latentstore.inspection.metrics``): float32, float16, bfloat16 (round to
nearest even on the float32 bits, in numpy), Imagenet.3GB's global affine
uint8 (clamp to ±6.5), Imagenet.int8's global uint8 (±12), per-sample and
per-channel absmax int8, and the default with zstd or blosc (bitshuffle +
zstd) on its chunks: sizes measured on disk of real stores, and random-read
speed (batches of 256 through ``store.read``, as in ``read.py``) as a ratio
to the uncompressed, memory-mapped store in the same run.

With ``--model`` (required for ``--images``, optional otherwise) the first
``--pixel-samples`` latents are decoded: PSNR and SSIM of decode(x̂) against
decode(x), and against the original crops for ``--images``. A randomly
initialised test model makes those columns meaningless, and the table says so.

The headline table sizes ImageNet-1k train as JPEG (published), as 256 px
JPEG (estimated from the shipped photos), as float32 latents, in
Imagenet.3GB's layout (measured) and as this store (measured).
"""

import argparse
import io
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import (
    _report,  # noqa: E402
    synthetic,  # noqa: E402
)
from latentstore import format as fmt  # noqa: E402
from latentstore.inspection.metrics import LatentErrors, latent_errors, psnr, ssim  # noqa: E402

IMAGENET_TRAIN = 1_281_167
#: ILSVRC2012_img_train.tar, the published size of ImageNet-1k train as JPEG.
IMAGENET_JPEG_BYTES = 138e9
PHOTOS = Path(latentstore.__file__).parent / "data" / "photos"
BATCH = 256
JPEG_QUALITY = 90
IMAGENET_3GB_SAMPLES = 4096


# -- latent sources ---------------------------------------------------------
@dataclass
class Latents:
    """Reference float32 latents (N, C, H, W), what they are, and what can decode them."""

    x: np.ndarray
    description: str
    crops: np.ndarray | None = None  # uint8 (N, H, W, 3) the latents were encoded from
    backend: object = None


def synthetic_source(n: int, seed: int = 0) -> Latents:
    return Latents(synthetic.synthetic_latents(n, seed=seed), synthetic.DESCRIPTION)


def store_source(path, n: int) -> Latents:
    store = latentstore.open(path)
    rows = np.flatnonzero(store.valid)[:n]
    if not rows.size:
        raise ValueError(f"the store at {path} holds no valid samples; pick another store")
    encoder = store.metadata.encoder or {}
    model = encoder.get("model", "an unrecorded model")
    random = " (a RANDOMLY INITIALISED test model)" if encoder.get("random_init") else ""
    description = (
        f"the first {len(rows):,} valid samples of the store {path}, encoded by {model}{random}; "
        "its DEQUANTIZED latents are the reference: errors are relative to them, "
        "not to the float latents the store was made from (so re-quantizing them with the store's own "
        "scheme reads as lossless)"
    )
    return Latents(store.read(rows)[0], description)


def image_source(directory, backend, n: int, resolution: int) -> Latents:
    """Encode the first ``n`` decodable images of ``directory`` with ``backend``."""
    import torch

    from latentstore.encoding.preprocess import ImageDecodeError, Preprocessing
    from latentstore.encoding.sources import open_source

    source = open_source(directory)
    preprocessing = Preprocessing(resolution=resolution)
    crops = []
    for i in range(len(source)):
        if len(crops) == n:
            break
        try:
            crops.append(preprocessing(source.read(i)[0]))
        except ImageDecodeError as e:
            print(f"skipping an image that cannot be decoded: {e}", file=sys.stderr)
    if not crops:
        raise ValueError(f"no decodable images in {directory}")
    crops = np.stack(crops)
    pixels = torch.from_numpy(crops).permute(0, 3, 1, 2)
    x = torch.cat([backend.encode(pixels[i : i + 16]).cpu() for i in range(0, len(crops), 16)]).numpy()
    description = f"{len(crops)} images of {directory} encoded at {resolution} px by {_model_name(backend)}"
    return Latents(x, description, crops, backend)


def _model_name(backend) -> str:
    if backend.random_init:
        return f"{backend.name} (a RANDOMLY INITIALISED test model, not a trained autoencoder)"
    return backend.name + (f" @ {backend.revision[:12]}" if backend.revision else "")


# -- storage schemes --------------------------------------------------------
def bfloat16_roundtrip(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 -> float32, rounding to nearest even on the bits (finite input)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    odd = (bits >> 16) & 1
    return ((bits + np.uint32(0x7FFF) + odd) & np.uint32(0xFFFF0000)).view(np.float32)


def global_uint8_roundtrip(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """One global affine map to 255 steps of uint8 over [low, high], values outside clamped."""
    step = np.float32((high - low) / 255)
    q = np.round((np.clip(x, low, high) - np.float32(low)) / step).astype(np.uint8)
    return q.astype(np.float32) * step + np.float32(low)


def absmax_roundtrip(x: np.ndarray, granularity: str) -> np.ndarray:
    return latentstore.dequantize(*latentstore.quantize(x, granularity))


@dataclass(frozen=True)
class Scheme:
    """A way to store latents: ``roundtrip(x)`` is what a reader gets back.

    ``roundtrip`` is None for the lossless layers on the default scheme,
    whose bytes are measured on disk and whose values are the default's.
    """

    name: str
    label: str  # short name for the plot
    bytes_per_sample: float
    roundtrip: Callable[[np.ndarray], np.ndarray] | None
    clip_range: tuple[float, float] | None = None
    note: str = ""
    compressor: str | None = None
    default: bool = False


def schemes(shape) -> list[Scheme]:
    """Every scheme compared, with its bytes per sample for latents of ``shape`` (C, H, W)."""
    values = int(np.prod(shape))
    channels = shape[0]
    default = "per-sample absmax int8 (latentstore default)"
    return [
        Scheme("float32", "float32", 4 * values, lambda x: x),
        Scheme("float16", "float16", 2 * values, lambda x: x.astype(np.float16).astype(np.float32)),
        Scheme(
            "bfloat16", "bfloat16", 2 * values, bfloat16_roundtrip, note="round to nearest even on the float32 bits (numpy)"
        ),
        Scheme(
            "Imagenet.3GB global uint8 (±6.5)", "Imagenet.3GB uint8 ±6.5", values,
            lambda x: global_uint8_roundtrip(x, -6.5, 6.5), (-6.5, 6.5),
            "codes only; its pickled layout is sized in the headline table",
        ),
        Scheme(
            "Imagenet.int8 global uint8 (±12)", "Imagenet.int8 uint8 ±12", values,
            lambda x: global_uint8_roundtrip(x, -12.0, 12.0), (-12.0, 12.0),
            "codes only; its SDXL-VAE range applied to these latents",
        ),
        Scheme(
            default, "absmax int8 per sample (default)", values + 2, lambda x: absmax_roundtrip(x, "sample"),
            note="int8 codes + one float16 scale; bytes measured on disk", default=True,
        ),
        Scheme(
            "per-channel absmax int8", "absmax int8 per channel", values + 2 * channels,
            lambda x: absmax_roundtrip(x, "channel"), note="int8 codes + a float16 scale per channel",
        ),
        Scheme(
            default + " + zstd", "default + zstd", float("nan"), None,
            note="zstd level 3 on every chunk; bytes measured on disk", compressor="zstd",
        ),
        Scheme(
            default + " + blosc", "default + blosc (bitshuffle, zstd)", float("nan"), None,
            note="blosc bitshuffle + zstd level 3; bytes measured on disk", compressor="blosc",
        ),
    ]


# -- stores on disk ---------------------------------------------------------
def _file_bytes(path: Path) -> int:
    """Sum of the sizes of the files under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def chunk_bytes(store: Path, array: str) -> int:
    """Bytes of an array's chunk files (its data, without the zarr.json metadata)."""
    return _file_bytes(store / array / "c")


def store_chunking(n: int, shape) -> tuple[int, int]:
    """(chunk_samples, samples written): the default chunking when n allows, whole chunks only."""
    chunk = fmt.default_chunk_samples(tuple(shape))
    if n < chunk:
        chunk = 1 << (n.bit_length() - 1)
    return chunk, n // chunk * chunk


def write_stores(directory: Path, x: np.ndarray, chunk: int) -> dict:
    """One store per compressor holding ``x`` (whole chunks); returns {compressor: path}."""
    paths = {}
    for compressor in (None, "zstd", "blosc"):
        path = directory / f"{compressor or 'uncompressed'}.zarr"
        writer = latentstore.create(path, len(x), x.shape[1:], chunk_samples=chunk, compressor=compressor, overwrite=True)
        for start in range(0, len(x), chunk):
            writer.write(start, x[start : start + chunk])
        writer.close()
        paths[compressor] = path
    return paths


def chunks_touched(chunks: int, batch: int = BATCH) -> float:
    """Expected number of distinct chunks a batch of uniform random indices touches."""
    return chunks * (1 - (1 - 1 / chunks) ** batch)


def read_rates(paths: dict, samples: int, chunk: int, quick: bool) -> dict:
    """Samples/s of ``store.read`` on batches of 256 random indices, per compressor.

    Also the uncompressed store read through zarr-python (``oindex``), which
    separates the cost of zarr-python from the cost of decompression.
    """
    import zarr

    _report.warm_page_cache(*paths.values())
    rng = np.random.default_rng(1)
    batches = [rng.integers(0, samples, BATCH) for _ in range(16)]
    counter = iter(range(1 << 62))

    def next_batch():
        return batches[next(counter) % len(batches)]

    out = np.empty((BATCH, *latentstore.open(paths[None]).latent_shape), np.float32)
    rates = {}
    stores = {compressor: latentstore.open(path) for compressor, path in paths.items()}
    expected = stores[None].read(batches[0])[0]
    for compressor, store in stores.items():
        if store.fast != (compressor is None):
            raise RuntimeError(f"the {compressor or 'uncompressed'} store did not open on the expected read path")
        np.testing.assert_array_equal(store.read(batches[0])[0], expected)
        fast = compressor is None
        # The mapped reads take ~0.1 ms a batch: many calls and the best of 5
        # runs keep a busy shared machine from deciding the ratio.
        calls = (100 if quick else 400) if fast else (2 if quick else 8)
        rates[compressor] = _report.best_rate(
            lambda store=store: store.read(next_batch(), out=out), BATCH, calls=calls, repeats=5 if fast else 2
        )
    latents = zarr.open_group(paths[None], mode="r")["latents"]
    scales = stores[None].scales.astype(np.float32)

    def zarr_way():
        rows = np.sort(next_batch())
        return latents.oindex[rows].astype(np.float32) * scales[rows][:, None, None, None]

    rates["zarr"] = _report.best_rate(zarr_way, BATCH, calls=2 if quick else 8, repeats=2)
    return rates


# -- pixel space ------------------------------------------------------------
def decode(backend, x: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) images of latents ``x``."""
    import torch

    images = [backend.decode(torch.from_numpy(np.ascontiguousarray(x[i : i + 8]))).cpu() for i in range(0, len(x), 8)]
    return torch.cat(images).permute(0, 2, 3, 1).contiguous().numpy()


def pixel_metrics(test: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean PSNR (finite values; inf when all identical) and mean SSIM over image pairs."""
    psnrs = [psnr(r, t) for r, t in zip(reference, test)]
    finite = [p for p in psnrs if np.isfinite(p)]
    mean_psnr = float(np.mean(finite)) if finite else float("inf")
    return mean_psnr, float(np.mean([ssim(r, t) for r, t in zip(reference, test)]))


# -- headline ---------------------------------------------------------------
def jpeg256_bytes(resolution: int = 256) -> tuple[float, int]:
    """Mean JPEG size (quality 90) of the shipped photos centre-cropped to ``resolution``."""
    from PIL import Image

    from latentstore.encoding.preprocess import Preprocessing

    preprocessing = Preprocessing(resolution=resolution)
    sizes = []
    for path in sorted(PHOTOS.rglob("*.JPEG")):
        buffer = io.BytesIO()
        Image.fromarray(preprocessing(path)).save(buffer, format="JPEG", quality=JPEG_QUALITY)
        sizes.append(buffer.tell())
    return float(np.mean(sizes)), len(sizes)


def imagenet_3gb_bytes(codes: np.ndarray, directory: Path) -> float | None:
    """Bytes per sample of Imagenet.3GB's layout: torch.save of a list of dicts of uint8 tensors.

    Ids are ImageNet-style file stems; returns None without torch.
    """
    try:
        import torch
    except ImportError:
        return None
    records = [
        {"id": f"n{1440764 + i % 1000:08d}_{i:05d}", "latent": torch.from_numpy(codes[i].copy()), "label": i % 1000}
        for i in range(len(codes))
    ]
    path = directory / "imagenet-3gb-layout.pt"
    torch.save(records, path)
    return path.stat().st_size / len(codes)


# -- the run ----------------------------------------------------------------
@dataclass
class Row:
    scheme: Scheme
    bytes_per_sample: float
    errors: LatentErrors
    pixels: tuple | None = None  # (psnr vs decode(x), ssim vs decode(x), psnr vs crop, ssim vs crop)


@dataclass
class Result:
    source: Latents
    rows: list
    store_samples: int
    chunk: int
    store_bytes_per_sample: float
    rates: dict
    jpeg256: tuple
    imagenet_3gb: float | None
    pixel_samples: int
    float_pixels: tuple | None  # decode(x) against the crops: (psnr, ssim)


def run(source: Latents, directory: Path, *, pixel_samples: int = 8, quick: bool = False) -> Result:
    x = source.x
    n, shape = len(x), x.shape[1:]
    chunk, store_samples = store_chunking(n, shape)
    paths = write_stores(directory, x[:store_samples], chunk)
    default_codes = absmax_roundtrip(x[:store_samples], "sample")
    measured = {}
    for compressor, path in paths.items():
        stored = latentstore.open(path).read(np.arange(store_samples))[0]
        if not np.array_equal(stored, default_codes):
            raise RuntimeError(f"the {compressor or 'uncompressed'} store does not return the default scheme's values")
        measured[compressor] = (chunk_bytes(path, fmt.LATENTS) + chunk_bytes(path, fmt.SCALES)) / store_samples
    rates = read_rates(paths, store_samples, chunk, quick)
    store_bytes = _file_bytes(paths[None]) / store_samples

    pixel_x = x[:pixel_samples] if source.backend is not None else None
    decoded_x = decode(source.backend, pixel_x) if pixel_x is not None else None
    crops = source.crops[:pixel_samples] if source.crops is not None and pixel_x is not None else None

    rows, default_row = [], None
    for scheme in schemes(shape):
        if scheme.roundtrip is None:
            rows.append(Row(scheme, measured[scheme.compressor], default_row.errors, default_row.pixels))
            continue
        reconstructed = scheme.roundtrip(x)
        errors = latent_errors(x, reconstructed, clip_range=scheme.clip_range)
        pixels = None
        if decoded_x is not None:
            images = decode(source.backend, reconstructed[:pixel_samples])
            pixels = pixel_metrics(images, decoded_x) + (pixel_metrics(images, crops) if crops is not None else (None, None))
        row = Row(scheme, measured[None] if scheme.default else scheme.bytes_per_sample, errors, pixels)
        rows.append(row)
        if scheme.default:
            default_row = row
    codes_3gb = np.round((np.clip(x[:IMAGENET_3GB_SAMPLES], -6.5, 6.5) + 6.5) / 13 * 255).astype(np.uint8)
    return Result(
        source=source,
        rows=rows,
        store_samples=store_samples,
        chunk=chunk,
        store_bytes_per_sample=store_bytes,
        rates=rates,
        jpeg256=jpeg256_bytes(),
        imagenet_3gb=imagenet_3gb_bytes(codes_3gb, directory),
        pixel_samples=0 if pixel_x is None else len(pixel_x),
        float_pixels=pixel_metrics(decoded_x, crops) if crops is not None else None,
    )


# -- report -----------------------------------------------------------------
def _gb(bytes_per_sample: float) -> str:
    return f"{bytes_per_sample * IMAGENET_TRAIN / 1e9:,.2f} GB"


def _db(value: float) -> str:
    return "∞ (lossless)" if value == float("inf") else f"{value:.1f}"


def _metric(value, digits=3) -> str:
    if value is None:
        return "—"
    return "∞" if value == float("inf") else f"{value:.{digits}f}"


def scheme_table(result: Result) -> str:
    header = ["scheme", "bytes/sample", "ImageNet-1k train", "MSE", "max abs error", "SNR dB", "clipped", "notes"]
    rows = []
    for row in result.rows:
        e = row.errors
        rows.append(
            [
                row.scheme.name,
                f"{row.bytes_per_sample:,.1f}",
                _gb(row.bytes_per_sample),
                f"{e.mse:.3g}",
                f"{e.max_abs:.3g}",
                _db(e.snr_db),
                f"{e.fraction_clipped:.3%}",
                row.scheme.note,
            ]
        )
    return _report.markdown_table(header, rows)


def read_table(result: Result) -> str:
    reference = result.rates[None]
    chunks_here = result.store_samples // result.chunk
    default_chunk = fmt.default_chunk_samples(result.source.x.shape[1:])
    # Projecting needs chunks of the default size: the cost is per chunk decompressed.
    growth = None
    if result.chunk == default_chunk:
        growth = chunks_touched(-(-IMAGENET_TRAIN // default_chunk)) / chunks_touched(chunks_here)
    rows = []
    for key, name in [
        (None, "uncompressed store, memory-mapped (reference)"),
        ("zarr", "uncompressed store through zarr-python oindex"),
        ("zstd", "zstd store through zarr-python (store.read)"),
        ("blosc", "blosc store through zarr-python (store.read)"),
    ]:
        rate = result.rates[key]
        projected = f"{rate / growth:,.0f}" if key is not None and growth else "—"
        rows.append([name, f"{rate:,.0f}", f"{rate / reference:.5f}", f"{reference / rate:,.0f}x", projected])
    return _report.markdown_table(
        ["read path", "samples/s", "x reference", "slower by", "projected samples/s at 1,281,167"], rows
    ), growth


def pixel_table(result: Result) -> str:
    flag = " [MEANINGLESS: random model]" if result.source.backend.random_init else ""
    rows = []
    for row in result.rows:
        p = row.pixels
        rows.append([row.scheme.name, _metric(p[0], 2), _metric(p[1], 4), _metric(p[2], 2), _metric(p[3], 4)])
    columns = ["PSNR vs decode(x) dB", "SSIM vs decode(x)", "PSNR vs crop dB", "SSIM vs crop"]
    return _report.markdown_table(["scheme"] + [c + flag for c in columns], rows)


def headline_table(result: Result) -> str:
    jpeg_mean, photos = result.jpeg256
    values = int(np.prod(result.source.x.shape[1:]))
    rows = [
        ["JPEG, full size", "—", f"{IMAGENET_JPEG_BYTES / 1e9:,.0f} GB", "published size of ILSVRC2012_img_train.tar"],
        [
            "JPEG, 256 px centre crops (quality 90)",
            f"{jpeg_mean:,.0f}",
            _gb(jpeg_mean),
            f"ESTIMATE: mean size of the {photos} shipped photos, cropped and re-encoded",
        ],
        ["float32 latents", f"{4 * values:,}", _gb(4 * values), f"{values} values x 4 bytes"],
    ]
    if result.imagenet_3gb is not None:
        rows.append(
            [
                "Imagenet.3GB layout (pickled list of dicts of uint8 tensors)",
                f"{result.imagenet_3gb:,.0f}",
                _gb(result.imagenet_3gb),
                f"measured: torch.save of {min(IMAGENET_3GB_SAMPLES, len(result.source.x)):,} records",
            ]
        )
    else:
        rows.append(["Imagenet.3GB layout", "—", "—", "not measured: torch is not installed"])
    rows.append(
        [
            "this store (per-sample absmax int8, uncompressed)",
            f"{result.store_bytes_per_sample:,.1f}",
            _gb(result.store_bytes_per_sample),
            f"measured: every file of a {result.store_samples:,}-sample store (latents, scales, labels, valid, metadata)",
        ]
    )
    return _report.markdown_table(["ImageNet-1k train (1,281,167 images) as", "bytes/sample", "size", "how"], rows)


def read_note(result: Result, growth: float | None) -> str:
    chunks = result.store_samples // result.chunk
    text = (
        "Ratios are within this run; store.read with the library's default thread count. zarr-python reads (and "
        "decompresses, checksums) every chunk a batch touches in full, compressed or not: here "
        f"{chunks_touched(chunks):.1f} of {chunks} chunks of {result.chunk:,} samples per batch."
    )
    if growth is None:
        return text + " These are not the default chunks, so no projection to ImageNet scale is made."
    return text + (
        f" At 1,281,167 samples a batch touches about {growth * chunks_touched(chunks):.0f} default chunks, so the "
        f"projected column divides the measured rate by {growth:.1f} (a projection: time assumed linear in chunks touched)."
    )


def report(result: Result, command: str, plot_name: str) -> str:
    source = result.source
    n, shape = source.x.shape[0], source.x.shape[1:]
    reads, growth = read_table(result)
    lines = [
        f"# Compression against fidelity: {n:,} latents of shape {shape}",
        "",
        f"**Latents: {source.description}.**",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. Command: `{command}`. "
        "GB = 10^9 bytes; projected sizes are bytes/sample x 1,281,167.",
        "",
        "## Storage schemes",
        "",
        scheme_table(result),
        "",
        "Errors are against the reference latents above, over all "
        f"{n:,} samples; SNR = 10 log10(Σx² / Σ(x - x̂)²). \"clipped\" is the share of values outside the range a "
        "global scheme represents. Bytes of the latentstore rows are measured on disk (the chunk files of the `latents` and "
        f"`scales` arrays of real stores of {result.store_samples:,} samples in chunks of {result.chunk:,}, "
        "crc32c included); the lossless layers return the default scheme's values bit for bit (checked).",
        "",
        f"![rate-distortion]({plot_name})",
        "",
        f"## Random reads: batches of {BATCH} random indices, warm page cache",
        "",
        reads,
        "",
        read_note(result, growth),
        "",
    ]
    if result.pixel_samples:
        backend = source.backend
        lines += [f"## Pixel space: the first {result.pixel_samples} latents decoded by {_model_name(backend)}", ""]
        if backend.random_init:
            lines += [
                "> **MEANINGLESS: these latents were decoded by a tiny RANDOMLY INITIALISED model, not a trained "
                "autoencoder. These PSNR/SSIM figures say nothing about the image quality of any scheme; they only "
                "show that the pipeline runs.**",
                "",
            ]
        lines += [pixel_table(result), ""]
        if result.float_pixels is not None:
            lines += [
                f"decode(float32 latents) against the original crops: PSNR {_metric(result.float_pixels[0], 2)} dB, "
                f"SSIM {_metric(result.float_pixels[1], 4)} (the autoencoder's own loss).",
                "",
            ]
    else:
        lines += ["## Pixel space", "", "Not measured: no decoder (pass `--model` to decode).", ""]
    lines += [
        "## Headline: ImageNet-1k train on disk",
        "",
        headline_table(result),
        "",
    ]
    return "\n".join(lines)


def plot(result: Result, path: Path) -> Path:
    """Rate-distortion: bytes per sample (log) against SNR dB, one labelled point per scheme."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    finite = [r.errors.snr_db for r in result.rows if np.isfinite(r.errors.snr_db)]
    top = max(finite) + 12
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for row in result.rows:
        scheme = row.scheme
        lossless = not np.isfinite(row.errors.snr_db)
        y = top if lossless else row.errors.snr_db
        if scheme.compressor:
            style = dict(color="tab:purple", marker="x" if scheme.compressor == "blosc" else "s", s=60)
            offset = (8, -14) if scheme.compressor == "blosc" else (-8, -14)
        else:
            color = "tab:blue" if "float" in scheme.name else "tab:red" if "global" in scheme.name else "tab:green"
            style = dict(color=color, marker="^" if lossless else "o", s=50)
            offset = (6, 6)
        ax.scatter(row.bytes_per_sample, y, zorder=3, **style)
        label = scheme.label + (" (lossless, ∞ dB)" if lossless else "")
        ax.annotate(
            label, (row.bytes_per_sample, y), textcoords="offset points", xytext=offset, fontsize=8,
            ha="right" if offset[0] < 0 else "left",
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if str(int(v))[0] in "2357" else ""))
    ax.tick_params(axis="x", which="minor", labelsize=8)
    ax.set_xlabel("bytes per sample (log scale)")
    ax.set_ylabel("SNR of the latents, dB (higher is better)")
    ax.set_ylim(min(finite) - 5, top + 6)
    low, high = ax.get_xlim()
    ax.set_xlim(low / 1.3, high * 2.2)
    ax.grid(True, which="both", alpha=0.3)
    n = len(result.source.x)
    kind = "SYNTHETIC latents" if result.source.description.startswith("SYNTHETIC") else "latents: see the table"
    ax.set_title(f"Storage schemes: size against fidelity ({n:,} {kind})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def generate(source: Latents, results, stem: str, command: str, *, pixel_samples=8, quick=False, scratch=None):
    """Run the benchmark on ``source``; save ``<stem>.md`` and ``<stem>.png`` under ``results``.

    Returns ``(result, markdown text, (md path, png path))``.
    """
    results = Path(results) if results else _report.RESULTS
    results.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        result = run(source, Path(tmp), pixel_samples=pixel_samples, quick=quick)
    png = plot(result, results / f"{stem}.png")
    text = report(result, command, png.name)
    return result, text, (_report.save(stem, text, results), png)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--synthetic", action="store_true", help="synthetic latents (the default)")
    where.add_argument("--store", help="take the latents of this store")
    where.add_argument("--images", help="encode the images of this folder (needs --model)")
    parser.add_argument("--model", help="autoencoder (hub id or local directory) to encode --images and decode")
    parser.add_argument("--samples", type=int, default=32768, help="number of latents (default 32768)")
    parser.add_argument("--pixel-samples", type=int, default=8, help="latents decoded for pixel metrics")
    parser.add_argument("--resolution", type=int, default=256, help="crop size for --images")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic latents")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table and plot")
    parser.add_argument("--name", default=None, help="results file stem (default: compression[-store|-images])")
    parser.add_argument("--quick", action="store_true", help="fewer timed reads (smoke runs)")
    args = parser.parse_args(argv)
    if args.images and not args.model:
        parser.error("--images needs --model to encode them")
    if args.samples < 1:
        parser.error("--samples must be at least 1")

    backend = None
    if args.model:
        from latentstore.encoding.backends import load_backend

        backend = load_backend(args.model)
    if args.store:
        source, stem = store_source(args.store, args.samples), "compression-store"
    elif args.images:
        source, stem = image_source(args.images, backend, args.samples, args.resolution), "compression-images"
    else:
        source, stem = synthetic_source(args.samples, args.seed), "compression"
    source.backend = backend
    command = "python benchmarks/compression.py" + "".join(" " + a for a in (sys.argv[1:] if argv is None else argv))
    _, text, paths = generate(
        source, args.results, args.name or stem, command,
        pixel_samples=args.pixel_samples, quick=args.quick, scratch=args.dir,
    )
    print(text)
    print(f"saved {paths[0]} and {paths[1]}", file=sys.stderr)
    return text


if __name__ == "__main__":
    main()
