"""Small image collections built on the fly: WebDataset shards, metadata folders, parquet datasets.

Every image is a solid colour that encodes its sample number (:func:`image_bytes`,
read back by :func:`sample_number`), so a test can check that each caption, field
and label lands with its own image.
"""

import csv
import io
import json
import tarfile
from pathlib import Path

from PIL import Image


def colour(k: int) -> tuple[int, int, int]:
    """The colour of sample ``k`` (0 <= k < 1024): steps of 8 survive JPEG."""
    return (k % 32) * 8, (k // 32) * 8, 100


def image_bytes(k: int, fmt: str = "PNG", size: int = 16) -> bytes:
    """A ``size``-pixel square image file (PNG or JPEG) of :func:`colour` ``(k)``."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour(k)).save(buffer, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def sample_number(raw: bytes) -> int:
    """The ``k`` an :func:`image_bytes` image was made for."""
    with Image.open(io.BytesIO(raw)) as img:
        r, g, _ = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
    return round(g / 8) * 32 + round(r / 8)


def caption(k: int) -> str:
    return f"a photo of sample number {k}"


def tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    """An uncompressed tar of ``(member name, data)`` in that order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000  # fixed: the same members make the same bytes
            tf.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sample_members(k: int, key: str | None = None, *, image: str = "jpg", text: bool = True,
                   meta: dict | None = None, label: int | None = None) -> list[tuple[str, bytes]]:
    """The members img2dataset writes for sample ``k``: ``KEY.jpg``, ``KEY.txt``, ``KEY.json`` (and ``KEY.cls``)."""
    key = key if key is not None else f"{k:09d}"
    members = [(f"{key}.{image}", image_bytes(k, "JPEG" if image.lower() in ("jpg", "jpeg") else "PNG"))]
    if text:
        members.append((f"{key}.txt", (caption(k) + "\n").encode()))
    members.append((f"{key}.json", json.dumps(meta if meta is not None else {"key": key, "number": k}).encode()))
    if label is not None:
        members.append((f"{key}.cls", str(label).encode()))
    return members


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tar_bytes(members))
    return path


def write_shards(folder: Path, counts: list[int], *, label_of=lambda k: k % 3, **options) -> list[int]:
    """Shards ``folder/00000.tar`` ... holding ``counts[s]`` samples each, numbered on across shards;
    returns the sample numbers in order. The label of sample ``k`` is ``label_of(k)``."""
    numbers, k = [], 0
    for s, count in enumerate(counts):
        members = []
        for _ in range(count):
            members += sample_members(k, meta={"number": k, "width": 16, "aesthetic": k / 10, "url": f"https://x/{k}"},
                                      label=label_of(k), **options)
            numbers.append(k)
            k += 1
        write_shard(folder / f"{s:05d}.tar", members)
    return numbers


def member_offset(data: bytes, name: str) -> int:
    """Where member ``name``'s data starts in the tar ``data``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        return tf.getmember(name).offset_data


def write_metadata_folder(root: Path, rows: list[dict], fmt: str = "jsonl", *, images: dict[str, int] | None = None,
                          fieldnames: list[str] | None = None) -> Path:
    """``root/metadata.<fmt>`` with ``rows``, and an image for each ``file_name`` in ``images``
    (name -> sample number; by default every row's file, numbered by row)."""
    root.mkdir(parents=True, exist_ok=True)
    images = images if images is not None else {row["file_name"]: k for k, row in enumerate(rows)}
    for name, k in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(image_bytes(k, "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"))
    if fmt == "jsonl":
        (root / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames or list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return root


def write_parquet(path: Path, columns: dict, row_group_size: int | None = None) -> Path:
    """A parquet file of ``columns`` (name -> list of values, or a pyarrow array)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path
