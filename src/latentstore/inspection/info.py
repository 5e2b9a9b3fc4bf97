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
        f"latent shape     {tuple(facts['latent_shape'])} {facts['code_dtype']}",
        f"quantization     {quant_text}",
        f"chunking         {facts['chunk_samples']:,} samples per chunk, {facts['chunks']:,} chunks",
        f"flip latents     {'yes' if facts['flip'] else 'no'}",
        f"classes          {facts['classes'] if facts['classes'] is not None else 'none recorded'}",
        *_column_lines(facts.get("columns") or []),
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
