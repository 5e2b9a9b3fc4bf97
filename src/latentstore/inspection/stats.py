"""``latentstore stats``: what the values in a store look like, recomputed from the codes.

:func:`compute_stats` goes over every valid sample once and returns a
:class:`StoreStats`: per-channel mean, std, min and max of the dequantized
latents (accumulated exactly from the codes by :class:`~latentstore.store.stats.ChannelMoments`),
the distribution of the float16 scales, the fraction of codes at the ends of
the code range (±127 for absmax: every sample has at least one there, the
code of its largest magnitude), and whether the ``stats`` recorded in the
metadata agree. :func:`plot_stats` draws histograms with matplotlib (the
``plot`` extra). A bucketed store is read one bucket at a time, over each
sample's own h*w tokens (the zeros that pad its row count for nothing), and
its plot adds the samples per bucket.
"""

from dataclasses import dataclass, field

import numpy as np

from latentstore import format as fmt
from latentstore.inspection.info import bucket_histogram, bucket_label
from latentstore.progress import Progress
from latentstore.store.reader import LatentStore
from latentstore.store.stats import ChannelMoments

PERCENTILES = (0, 1, 5, 25, 50, 75, 95, 99, 100)
#: Relative agreement asked of the stored statistics (they differ only by summation order).
STORED_RTOL = 1e-6
#: Samples read per step: bounds the memory of the int32 code sums.
BLOCK_SAMPLES = 4096
PLOT_INSTALL_HINT = "install matplotlib to draw the histograms: pip install 'latentstore[plot]'"


@dataclass
class StoreStats:
    """Statistics of the valid samples of a store (see :func:`compute_stats`)."""

    path: str
    samples: int
    valid: int
    granularity: str | None
    mean: np.ndarray
    std: np.ndarray
    min: np.ndarray
    max: np.ndarray
    #: Values per channel the moments are over (valid samples x H x W).
    count: int
    #: Fraction of all codes at the limit codes (limit_codes).
    limit_fraction: float
    limit_codes: tuple[int, int]
    #: Fraction of all codes at the limit that no scale put there: for absmax,
    #: beyond the one code per scale group its largest value maps to ±127 by
    #: construction (absmax never clips); for affine codes, every limit code
    #: (a value the source's range may have clipped).
    excess_limit_fraction: float
    #: Percentiles (PERCENTILES) of the scales of valid samples, pooled; None for the affine scheme.
    scale_percentiles: np.ndarray | None
    #: Per channel (C, len(PERCENTILES)) for channel granularity, else None.
    channel_scale_percentiles: np.ndarray | None
    stored: dict | None
    mismatches: list[str] = field(default_factory=list)
    #: Dequantized values of a random subset of valid samples, for the value histogram: (n, C, H*W),
    #: or for a bucketed store one (C, h*w) array per sample (its own tokens).
    value_sample: np.ndarray | list[np.ndarray] | None = None
    #: Scales of valid samples (float32, pooled over channels), for the scale histogram.
    scale_values: np.ndarray | None = None
    #: A bucketed store's valid samples per bucket (see ``inspection.info.bucket_histogram``); None otherwise.
    buckets: list[dict] | None = None

    @property
    def channels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict:
        def listed(a):
            return None if a is None else np.asarray(a).tolist()

        return {
            "path": self.path,
            "samples": self.samples,
            "valid": self.valid,
            "count": self.count,
            "mean": listed(self.mean),
            "std": listed(self.std),
            "min": listed(self.min),
            "max": listed(self.max),
            "limit_fraction": self.limit_fraction,
            "limit_codes": list(self.limit_codes),
            "excess_limit_fraction": self.excess_limit_fraction,
            "granularity": self.granularity,
            "percentiles": list(PERCENTILES),
            "scale_percentiles": listed(self.scale_percentiles),
            "channel_scale_percentiles": listed(self.channel_scale_percentiles),
            "stored": self.stored,
            "mismatches": self.mismatches,
            "buckets": self.buckets,
        }


def _limit_codes(metadata: fmt.StoreMetadata) -> tuple[int, int]:
    if metadata.quant.scheme == "absmax":
        return (-127, 127)
    info = np.iinfo(metadata.code_dtype)
    return (int(info.min), int(info.max))


def _compare(recomputed: dict, stored: dict | None) -> list[str]:
    """Where the stored statistics disagree with the recomputed ones, as readable lines."""
    if stored is None:
        return []
    problems = []
    if "count" in stored and stored["count"] != recomputed["count"]:
        problems.append(f"count: stored {stored['count']}, recomputed {recomputed['count']}")
    scale = max(float(np.max(np.abs(recomputed["std"]), initial=0.0)), 1e-30)
    for key in ("mean", "std", "min", "max"):
        if key not in stored:
            continue
        have, want = np.asarray(stored[key], dtype=np.float64), np.asarray(recomputed[key], dtype=np.float64)
        if have.shape != want.shape:
            problems.append(f"{key}: stored {have.shape[0] if have.ndim else 0} values, expected {want.shape[0]}")
            continue
        close = np.isclose(have, want, rtol=STORED_RTOL, atol=STORED_RTOL * scale)
        for c in np.flatnonzero(~close):
            problems.append(f"{key}[{c}]: stored {have[c]:.6g}, recomputed {want[c]:.6g}")
    return problems


def compute_stats(store, *, sample_size: int = 1024, seed: int = 0, progress: bool = False) -> StoreStats:
    """Recompute the statistics of ``store`` (a :class:`LatentStore` or a path) over its valid samples.

    ``sample_size`` valid samples, drawn with ``seed``, are dequantized whole
    for the value histogram (``value_sample``).
    """
    if not isinstance(store, LatentStore):
        store = LatentStore(store)
    m = store.metadata
    moments = ChannelMoments(m.channels)
    lut = m.quant.lookup_table()
    low, high = _limit_codes(m)
    at_limit = excess = 0
    groups = m.channels if m.quant.granularity == "channel" else 1
    step = min(m.chunk_samples, BLOCK_SAMPLES)
    starts = range(0, m.num_samples, step)
    bar = Progress(len(starts), "reading", unit="block", enabled=progress, leave=False)
    for start in starts:
        bar.update()
        stop = min(start + step, m.num_samples)
        valid = store.valid[start:stop]
        if not valid.any():
            continue
        for rows in _by_bucket(store, np.flatnonzero(valid) + start):
            q, scales = store.codes(rows)  # a bucket's own tokens, never the padding after them
            moments.add_codes(q, scales, lut)
            hits = (q == low) | (q == high)
            at_limit += int(np.count_nonzero(hits))
            if m.quant.scheme == "absmax":
                per_group = hits.reshape(len(q), groups, -1).sum(axis=2)
                excess += int(np.maximum(per_group - 1, 0).sum())
            else:
                excess += int(np.count_nonzero(hits))
    bar.close()

    valid_rows = np.flatnonzero(store.valid)
    scale_values = percentiles = per_channel = None
    if store.scales is not None:
        valid_scales = store.scales[valid_rows].astype(np.float32)
        scale_values = valid_scales.ravel()
        if scale_values.size:
            percentiles = np.percentile(scale_values, PERCENTILES)
            if m.quant.granularity == "channel":
                per_channel = np.percentile(valid_scales, PERCENTILES, axis=0).T
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(valid_rows, size=min(sample_size, len(valid_rows)), replace=False))
    value_sample: np.ndarray | list[np.ndarray] | None = None
    if len(chosen) and store.bucket_table is None:
        value_sample = store.read(chosen)[0].reshape(len(chosen), m.channels, -1)
    elif len(chosen):
        value_sample = [np.empty(0)] * len(chosen)
        for rows in _by_bucket(store, chosen):
            for k, values in zip(np.searchsorted(chosen, rows).tolist(), store.read(rows)[0]):
                value_sample[k] = values.reshape(m.channels, -1)

    recomputed = {"mean": moments.mean, "std": moments.std, "min": moments.min, "max": moments.max, "count": moments.count}
    return StoreStats(
        path=store.path,
        samples=m.num_samples,
        valid=len(valid_rows),
        granularity=m.quant.granularity,
        mean=moments.mean,
        std=moments.std,
        min=moments.min,
        max=moments.max,
        count=moments.count,
        limit_fraction=at_limit / (moments.count * m.channels) if moments.count else 0.0,
        limit_codes=(low, high),
        excess_limit_fraction=excess / (moments.count * m.channels) if moments.count else 0.0,
        scale_percentiles=percentiles,
        channel_scale_percentiles=per_channel,
        stored=m.stats,
        mismatches=_compare(recomputed, m.stats) if moments.count else [],
        value_sample=value_sample,
        scale_values=scale_values,
        buckets=bucket_histogram(store),
    )


def _by_bucket(store: LatentStore, rows: np.ndarray) -> list[np.ndarray]:
    """``rows`` split by bucket (one part for a store of one shape), each part in its order."""
    bucket_of = store.bucket_indices
    if bucket_of is None:
        return [rows]
    buckets = bucket_of[rows]
    return [rows[buckets == b] for b in np.unique(buckets).tolist()]


def format_table(stats: StoreStats) -> str:
    """The text ``latentstore stats`` prints."""
    lines = [
        f"store             {stats.path}",
        f"samples           {stats.valid:,} valid of {stats.samples:,} ({stats.count * stats.channels:,} values)",
    ]
    if stats.buckets is not None:
        used = sum(1 for entry in stats.buckets if entry["count"])
        lines.append(f"buckets           {len(stats.buckets)} shapes, {used} with valid samples; each sample's own "
                     "h*w tokens counted, not its row's padding")
    if not stats.count:
        lines.append("no valid samples: nothing to measure")
        return "\n".join(lines)
    low, high = stats.limit_codes
    if stats.granularity is not None:  # absmax
        lines.append(
            f"codes at ±{high}     {100 * stats.limit_fraction:.4f} % of all codes; "
            f"{100 * stats.excess_limit_fraction:.4f} % beyond the one per scale group whose largest value "
            "sets the scale (absmax never clips)"
        )
    else:
        lines.append(f"codes at {low}/{high}  {100 * stats.limit_fraction:.4f} % (values the source's range may have clipped)")
    if stats.scale_percentiles is not None:
        header = "  ".join(f"{'p' + str(p):>9}" for p in PERCENTILES)
        values = "  ".join(f"{v:9.4g}" for v in stats.scale_percentiles)
        lines += [f"scales            float16, one per {stats.granularity}", f"  {header}", f"  {values}"]
    lines.append("")
    scale_header = "  scale p50  scale p99" if stats.channel_scale_percentiles is not None else ""
    stored_header = "  stored" if stats.stored is not None else ""
    lines.append(f"channel       mean        std        min        max{scale_header}{stored_header}")
    bad_channels = {int(text.split("[")[1].split("]")[0]) for text in stats.mismatches if "[" in text}
    for c in range(stats.channels):
        row = f"{c:>7} {stats.mean[c]:10.4f} {stats.std[c]:10.4f} {stats.min[c]:10.4f} {stats.max[c]:10.4f}"
        if stats.channel_scale_percentiles is not None:
            p = stats.channel_scale_percentiles[c]
            row += f" {p[PERCENTILES.index(50)]:10.4g} {p[PERCENTILES.index(99)]:10.4g}"
        if stats.stored is not None:
            row += "  MISMATCH" if c in bad_channels else "  ok"
        lines.append(row)
    lines.append("")
    if stats.stored is None:
        lines.append("stored stats      none (the store is not finalized); nothing to compare")
    elif stats.mismatches:
        lines.append(f"stored stats      MISMATCH in {len(stats.mismatches)} values:")
        lines += [f"  {text}" for text in stats.mismatches[:20]]
        if len(stats.mismatches) > 20:
            lines.append(f"  ... and {len(stats.mismatches) - 20} more")
        lines.append("  the metadata's stats do not describe these latents; run 'latentstore verify' on the store")
    else:
        lines.append(f"stored stats      agree with the recomputed ones (relative tolerance {STORED_RTOL:g})")
    return "\n".join(lines)


def plot_stats(stats: StoreStats, path) -> None:
    """Write a PNG: value histogram, per-channel mean ± std with min/max, scale histogram.

    Needs matplotlib (``pip install 'latentstore[plot]'``); raises ImportError saying so.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(PLOT_INSTALL_HINT) from exc

    bucketed = stats.buckets is not None
    figure = Figure(figsize=(13, 12.5 if bucketed else 8.5), layout="constrained")
    grid = figure.add_gridspec(3 if bucketed else 2, 2, height_ratios=(1, 1, 0.9) if bucketed else None)
    values_ax, scales_ax = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[0, 1])
    moments_ax, extremes_ax = figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[1, 1])
    figure.suptitle(f"{stats.path}: {stats.valid:,} valid samples")

    if stats.value_sample is not None:
        values = (stats.value_sample.ravel() if isinstance(stats.value_sample, np.ndarray)
                  else np.concatenate([v.ravel() for v in stats.value_sample]))
        values_ax.hist(values, bins=201, color="tab:blue")
        std = float(values.std())
        for k in (-3, 3):
            values_ax.axvline(k * std, color="grey", linestyle=":", linewidth=1)
        values_ax.set_title(f"values of {len(stats.value_sample):,} random samples (dotted: ±3 std)")
    else:
        values_ax.set_title("no valid samples")
    values_ax.set_yscale("log")
    values_ax.set_xlabel("dequantized latent value")
    values_ax.set_ylabel("count")

    if stats.scale_values is not None:
        scales_ax.hist(stats.scale_values, bins=100, color="tab:orange")
        scales_ax.set_yscale("log")
        scales_ax.set_title(f"float16 scales, one per {stats.granularity}")
    else:
        scales_ax.set_title("no scales (affine scheme: two global constants)")
    scales_ax.set_xlabel("scale (max |x| / 127)")
    scales_ax.set_ylabel("count")

    channels = np.arange(stats.channels)
    moments_ax.bar(channels, stats.mean, color="tab:blue", alpha=0.7, label="mean")
    moments_ax.errorbar(channels, stats.mean, yerr=stats.std, fmt="none", ecolor="black", capsize=2, label="± std")
    if stats.stored is not None:
        moments_ax.scatter(channels, stats.stored["mean"], marker="x", s=16, color="tab:green", label="stored mean", zorder=3)
    moments_ax.axhline(0, color="grey", linewidth=0.5)
    moments_ax.set_xlabel("channel")
    moments_ax.set_title("per-channel mean ± std")
    moments_ax.legend(fontsize="small")

    extremes_ax.bar(channels, stats.max, color="tab:red", alpha=0.7, label="max")
    extremes_ax.bar(channels, stats.min, color="tab:purple", alpha=0.7, label="min")
    extremes_ax.axhline(0, color="grey", linewidth=0.5)
    extremes_ax.set_xlabel("channel")
    extremes_ax.set_title("per-channel min and max")
    extremes_ax.legend(fontsize="small")
    if stats.buckets is not None:
        _plot_buckets(figure.add_subplot(grid[2, :]), stats.buckets)
    figure.savefig(path, dpi=100)


def _plot_buckets(ax, histogram: list[dict]) -> None:
    """The valid samples per bucket, in table order (wide to tall), each bar labelled with its share."""
    positions = np.arange(len(histogram))
    counts = [entry["count"] for entry in histogram]
    bars = ax.bar(positions, counts, color="tab:green", alpha=0.8)
    for bar, entry in zip(bars, histogram):
        if entry["count"]:
            ax.annotate(f"{100 * entry['share']:.1f}%", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize="x-small", xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(positions, [bucket_label(entry).removesuffix(" px").removesuffix(" latent") for entry in histogram],
                  rotation=60 if len(histogram) > 8 else 0, fontsize="small")
    unit = "pixels" if histogram and histogram[0].get("pixels") else "latent tokens"
    ax.set_xlabel(f"bucket (height x width, {unit})")
    ax.set_ylabel("valid samples")
    ax.yaxis.get_major_locator().set_params(integer=True)
    empty = sum(1 for c in counts if not c)
    ax.set_title(f"samples per bucket ({len(histogram)} buckets" + (f", {empty} empty)" if empty else ")"))
    ax.margins(y=0.15)
