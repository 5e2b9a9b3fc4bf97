"""``latentstore info``: what a store holds and what it costs on disk."""

import os
from pathlib import Path

import numpy as np

from latentstore import format as fmt
from latentstore.store.reader import LatentStore


def bytes_on_disk(path: str) -> int | None:
    """Total size of the files under a local store; None for a remote one."""
    root = Path(path)
    if not root.is_dir():
        return None
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)


def padding_bytes(store: LatentStore) -> int:
    """Bytes of the unused rows that pad the last chunk of every per-sample array (uncompressed size).

    A store's last chunk is written whole, so a store of N samples holds
    ceil(N / S) * S rows; the projection to ImageNet leaves them out.
    """
    m = store.metadata
    unused = m.num_chunks * m.chunk_samples - m.num_samples
    if store.fast:
        return unused * sum(int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize for shape, dtype in m.arrays().values())
    return 0  # compressed padding (zeros) costs next to nothing


def column_facts(store: LatentStore) -> list[dict]:
    """Name, kind and bytes on disk of each per-sample column (bytes None for a remote store)."""
    facts = []
    for spec in store.metadata.columns:
        size = bytes_on_disk(os.path.join(store.path, spec.array_name))
        entry = {"name": spec.name, "kind": spec.kind, "bytes_on_disk": size}
        if spec.media_type:
            entry["media_type"] = spec.media_type
        facts.append(entry)
    return facts


def bucket_histogram(store: LatentStore) -> list[dict] | None:
    """A bucketed store's valid samples per bucket: ``[{"bucket", "shape": [h, w], "pixels": [H, W]
    (None when the table records no compression), "count", "share"}]`` in table order; None
    for a store of one shape."""
    table = store.bucket_table
    if table is None:
        return None
    entries = store.buckets
    total = sum(entry["count"] for entry in entries)
    histogram = []
    for entry in entries:
        h, w = entry["shape"][1:]
        histogram.append({
            "bucket": entry["bucket"],
            "shape": [h, w],
            "pixels": [h * table.compression, w * table.compression] if table.compression else None,
            "count": entry["count"],
            "share": entry["count"] / total if total else 0.0,
        })
    return histogram


def bucket_label(entry: dict) -> str:
    """A histogram entry's shape in words: '256x512 px' when the pixels are known, else '8x16 latent'."""
    if entry.get("pixels"):
        return f"{entry['pixels'][0]}x{entry['pixels'][1]} px"
    return f"{entry['shape'][0]}x{entry['shape'][1]} latent"


def describe(store: LatentStore) -> dict:
    """The facts ``info`` prints, as a JSON-able dict."""
    m = store.metadata
    size = bytes_on_disk(store.path)
    valid = int(store.valid.sum())
    padding = padding_bytes(store) if size is not None else None
    per_sample = (size - (padding or 0)) / m.num_samples if size and m.num_samples else None
    return {
        "path": store.path,
        "format_version": m.format_version,
        "complete": m.complete,
        "samples": m.num_samples,
        "valid": valid,
        "latent_shape": list(m.latent_shape),
        "code_dtype": m.quant.code_dtype,
        "quant": m.quant.to_dict(),
        "chunk_samples": m.chunk_samples,
        "chunks": m.num_chunks,
        "flip": m.flip,
        "read_path": "memory-mapped" if store.fast else "zarr-python (compressed or remote)",
        "bytes_on_disk": size,
        "padding_bytes": padding,
        "bytes_per_sample": per_sample,
        "projected_imagenet_bytes": per_sample * fmt.IMAGENET_TRAIN_SAMPLES if per_sample else None,
        "classes": len(m.classes) if m.classes is not None else None,
        "columns": column_facts(store),
        "bucket_table": m.buckets.to_dict() if m.buckets is not None else None,
        "buckets": bucket_histogram(store),
        "encoder": m.encoder,
        "source": m.source,
        "library_version": m.library_version,
    }


def format_bytes(nbytes: float | None) -> str:
    if nbytes is None:
        return "unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1000
    raise AssertionError  # pragma: no cover


def _column_lines(columns: list[dict]) -> list[str]:
    if not columns:
        return ["columns          none"]
    lines = []
    for i, column in enumerate(columns):
        kind = column["kind"] + (f" ({column['media_type']})" if column.get("media_type") else "")
        size = f", {format_bytes(column['bytes_on_disk'])}" if column.get("bytes_on_disk") is not None else ""
        lines.append(f"{'columns' if i == 0 else '':<17}{column['name']}: {kind}{size}")
    return lines


#: Width of the longest bar of the bucket histogram, in characters.
BAR_WIDTH = 24
#: Buckets listed one per line; the rest (the smallest) are summed on one line.
MAX_BUCKET_LINES = 24


def _bucket_lines(facts: dict) -> list[str]:
    """The bucket histogram as a compact table: shape (latent and pixels), count, share and a bar.

    Buckets without valid samples are left out and counted; only the largest
    MAX_BUCKET_LINES buckets get a line of their own (in table order).
    """
    histogram, table = facts.get("buckets"), facts.get("bucket_table") or {}
    if histogram is None:
        return []
    made = f", base {table['base']} px" if table.get("base") else ""
    made += f", {table['compression']}x compression" if table.get("compression") else ""
    used = [entry for entry in histogram if entry["count"]]
    lines = [f"buckets          {len(histogram)} shapes{made}; {len(used)} hold valid samples"]
    if not used:
        return lines
    shown = sorted(sorted(used, key=lambda e: -e["count"])[:MAX_BUCKET_LINES], key=lambda e: e["bucket"])
    most = max(entry["count"] for entry in used)
    lines.append(f"  {'bucket':>6}  {'h x w':>9}  {'pixels':>11}  {'samples':>11}  {'share':>7}")
    for entry in shown:
        h, w = entry["shape"]
        pixels = f"{entry['pixels'][0]}x{entry['pixels'][1]}" if entry.get("pixels") else "?"
        bar = "#" * max(1, round(BAR_WIDTH * entry["count"] / most))
        lines.append(f"  {entry['bucket']:>6}  {f'{h} x {w}':>9}  {pixels:>11}  {entry['count']:>11,}  "
                     f"{100 * entry['share']:6.2f}%  {bar}")
    rest = [entry for entry in used if entry not in shown]
    if rest:
        count = sum(entry["count"] for entry in rest)
        share = sum(entry["share"] for entry in rest)
        lines.append(f"  {'':>6}  {f'{len(rest)} more':>9}  {'':>11}  {count:>11,}  {100 * share:6.2f}%")
    if len(used) < len(histogram):
        lines.append(f"  ({len(histogram) - len(used)} empty buckets not shown)")
    return lines


def format_text(facts: dict) -> str:
    quant = facts["quant"]
    if quant["scheme"] == "absmax":
        quant_text = f"absmax int8, one float16 scale per {quant['granularity']}"
    else:
        quant_text = f"affine {quant['code_dtype']}: x = q * {quant['scale']:.6g} + {quant['offset']:.6g}"
    encoder = facts["encoder"] or {}
    lines = [
        f"store            {facts['path']}",
        f"format           v{facts['format_version']}, {'complete' if facts['complete'] else 'INCOMPLETE (still being written, or interrupted)'}",
        f"samples          {facts['valid']:,} valid of {facts['samples']:,}",
        f"latent shape     {tuple(facts['latent_shape'])} {facts['code_dtype']}"
        + (" (C x the largest bucket's tokens, each sample's own tokens first)" if facts.get("buckets") is not None else ""),
        f"quantization     {quant_text}",
        f"chunking         {facts['chunk_samples']:,} samples per chunk, {facts['chunks']:,} chunks",
        f"flip latents     {'yes' if facts['flip'] else 'no'}",
        f"classes          {facts['classes'] if facts['classes'] is not None else 'none recorded'}",
        *_column_lines(facts.get("columns") or []),
        *_bucket_lines(facts),
        f"read path        {facts['read_path']}",
        f"bytes on disk    {format_bytes(facts['bytes_on_disk'])}"
        + (f", of which {format_bytes(facts['padding_bytes'])} pad the last chunk" if facts.get("padding_bytes") else ""),
        f"bytes per sample {facts['bytes_per_sample']:.1f} (padding left out)" if facts["bytes_per_sample"] else "bytes per sample unknown",
        f"ImageNet-1k      {format_bytes(facts['projected_imagenet_bytes'])} projected for {fmt.IMAGENET_TRAIN_SAMPLES:,} samples",
    ]
    if encoder:
        random_note = "  (RANDOM WEIGHTS: a test model, latents are meaningless)" if encoder.get("random_init") else ""
        lines.append(f"encoder          {encoder.get('backend', '?')} {encoder.get('model', '?')}{random_note}")
        for key in ("revision", "dtype", "scaling_factor", "resolution", "preprocessing"):
            if encoder.get(key) is not None:
                lines.append(f"  {key:<15}{encoder[key]}")
    else:
        lines.append("encoder          not recorded")
    lines.append(f"written by       latentstore {facts['library_version']}")
    return "\n".join(lines)
