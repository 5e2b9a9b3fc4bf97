"""Source files as the tools that publish latents write them: Imagenet.3GB .pt lists, Imagenet.int8 MDS shards.

The MDS shards are hand-built from the layout documented by mosaicml-streaming (checked byte for
byte in test_interop_mds.py); the decoders are the sources' own dequantization formulas.
"""

import bz2
import gzip
import json
from pathlib import Path

import numpy as np
import torch


def imagenet_3gb_decode(q, dtype):
    """Imagenet.3GB's inverse of round((z + 6.5) / 13 * 255), in ``dtype``."""
    q = q.astype(dtype)
    return q / dtype(255) * dtype(13) - dtype(6.5)


def imagenet_int8_decode(q, dtype):
    """Imagenet.int8's documented decode, (x / 255 - 0.5) * 24, in ``dtype``."""
    q = q.astype(dtype)
    return (q / dtype(255) - dtype(0.5)) * dtype(24)


DECODERS = {(-6.5, 6.5): imagenet_3gb_decode, (-12.0, 12.0): imagenet_int8_decode}


def make_records(n, shape=(32, 8, 8), seed=0, ids=True):
    """Random uint8 codes (not real latents), labels and ids in the Imagenet.3GB layout."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    records = []
    for i in range(n):
        record = {"latent": torch.from_numpy(q[i].copy()), "label": int(labels[i])}
        if ids:
            record["id"] = f"n{labels[i]:08d}_{i}"
        records.append(record)
    return q, labels, records


def save_pt(records, path, *, zip_format=True):
    torch.save(records, path, _use_new_zipfile_serialization=zip_format)
    return path


def read_ids(store_path):
    import zarr

    return zarr.open_group(store_path, mode="r")["ids"][:].tolist()



IMAGENET_INT8_COLUMNS = {"vae_output": "uint8", "label": "str", "label_as_text": "str"}
#: Bytes of a fixed-size encoding (None: variable size), as mosaicml-streaming records them.
FIXED_SIZES = {"int": 8}


def encode_value(encoding, value):
    if encoding == "int":
        return np.int64(value).tobytes()
    if encoding == "str":
        return value.encode("utf-8")
    return bytes(value)


def build_shard(samples, columns, config=b"{}"):
    """One MDS shard file, from the layout of streaming/base/format/mds/writer.py.

    [num_samples uint32][num_samples + 1 absolute offsets uint32][config][samples];
    a sample is the uint32 sizes of its variable-size columns, then every
    column's bytes, columns in sorted name order.
    """
    names = sorted(columns)
    encoded = []
    for sample in samples:
        data = [encode_value(columns[name], sample[name]) for name in names]
        sizes = [len(d) for name, d in zip(names, data) if FIXED_SIZES.get(columns[name]) is None]
        encoded.append(np.array(sizes, dtype="<u4").tobytes() + b"".join(data))
    header = 4 + 4 * (len(samples) + 1) + len(config)
    offsets = (header + np.concatenate([[0], np.cumsum([len(e) for e in encoded])])).astype("<u4")
    return np.uint32(len(samples)).astype("<u4").tobytes() + offsets.tobytes() + config + b"".join(encoded)


COMPRESSORS = {
    None: lambda data: data,
    "zstd": lambda data: bytes(__import__("numcodecs").Zstd(level=3).encode(data)),
    "gz": gzip.compress,
    "bz2": bz2.compress,
}


def write_mds(directory, samples, columns=IMAGENET_INT8_COLUMNS, *, shard_samples=100, compression=None):
    """Hand-built MDS dataset: index.json and shard.NNNNN.mds[.ext] files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(columns)
    entries = []
    for k, start in enumerate(range(0, len(samples), shard_samples)):
        raw = build_shard(samples[start : start + shard_samples], columns)
        raw_name = f"shard.{k:05}.mds"
        zip_info = None
        if compression:
            zip_name = f"{raw_name}.{compression.split(':')[0]}"
            zipped = COMPRESSORS[compression.split(":")[0]](raw)
            (directory / zip_name).write_bytes(zipped)
            zip_info = {"basename": zip_name, "bytes": len(zipped), "hashes": {}}
        else:
            (directory / raw_name).write_bytes(raw)
        entries.append(
            {
                "column_encodings": [columns[n] for n in names],
                "column_names": names,
                "column_sizes": [FIXED_SIZES.get(columns[n]) for n in names],
                "compression": compression,
                "format": "mds",
                "hashes": [],
                "raw_data": {"basename": raw_name, "bytes": len(raw), "hashes": {}},
                "samples": len(samples[start : start + shard_samples]),
                "size_limit": 1 << 26,
                "version": 2,
                "zip_data": zip_info,
            }
        )
    (directory / "index.json").write_text(json.dumps({"version": 2, "shards": entries}, sort_keys=True))
    return directory


def make_int8_samples(n, shape=(4, 8, 8), seed=0):
    """Random uint8 codes (not real latents) with Imagenet.int8's columns."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 6, size=n)
    samples = [{"vae_output": q[i].tobytes(), "label": str(labels[i]), "label_as_text": f"class {labels[i]}"} for i in range(n)]
    return q, labels, samples
