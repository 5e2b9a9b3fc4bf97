"""A caption column beside the latents: random batches of latents + labels + text.

    python benchmarks/captions.py                        # 1,281,167 samples: ~2.9 GB, built once
    python benchmarks/captions.py --work /tmp/captions   # keep the store, reuse it on reruns
    python benchmarks/captions.py --samples 100000       # quicker

One store (format version 2) of SYNTHETIC (32, 8, 8) int8 latents (as
``synthetic.write_store`` makes them: not from any autoencoder; read speed
does not depend on the values) with a ``caption`` text column: one caption
per sample from a fixed-seed generator, 50-400 characters (log-normal
lengths, median 150, clipped), words of a small vocabulary, a few of them
accented (about 5% of the captions hold a non-ASCII character, as in
English caption sets), made chunk by chunk while the store is written.

With a warm page cache, every method reads the same fixed-seed random
batches of 256 indices and is checked to return the same values:

(a) ``store.read(idx)``: latents + labels alone (the reference);
(b) ``store.read(idx, columns=["caption"])``: latents + labels + captions;
(c) ``store.column("caption", idx)``: the captions alone;
(d) zarr-python on the same store,
    ``zarr.open_group(path)["columns/caption"].get_orthogonal_selection((np.sort(idx),))``,
    which decodes every touched chunk whole (a few batches only: it is slow).

(a)-(c) are the warm steady state, measured after one pass that touches
every chunk, in alternating rounds (best round of each). The first reads after ``open`` cost more, and are reported
apart: the open itself, a freshly opened store's first batch, and the first
pass over all caption chunks (which finds where every caption lies). A
one-off cost of the process, numpy's lazy import of numpy.ma on its first
``np.unique``, is paid before any of them.

Figures are samples/s; the targets are ratios within one run:
(b) >= 0.5 x (a); (c) >= 100 x (d).
"""

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report, synthetic  # noqa: E402

LATENT_SHAPE = (32, 8, 8)
DEFAULT_SAMPLES = 1_281_167
CAPTION_SEED = 20250601
MIN_CHARS, MAX_CHARS, MEDIAN_CHARS, LENGTH_SIGMA = 50, 400, 150, 0.5
#: Bump when the captions change, so a kept store is rebuilt.
GENERATOR_VERSION = 2
#: Of the words, this share are accented ones: about 5% of captions hold a non-ASCII character
#: (decoding those to str costs about twice as much as ASCII ones).
ACCENTED_SHARE = 0.002

VOCABULARY = (
    "a an the of in on with and near under over beside behind next to at by from into across two three "
    "several many small large tiny big old young wooden metal red blue green yellow white black brown grey "
    "orange pink purple golden bright dark sunny cloudy rainy snowy quiet busy empty crowded close-up photo "
    "picture view shot image painting drawing man woman child boy girl people dog cat horse bird cow sheep "
    "car bus train bicycle boat plane truck street road city town village field forest mountain river lake "
    "beach ocean sky sunset sunrise night kitchen table chair window door house building bridge tower park "
    "garden flowers tree grass rock sand snow water food plate bowl cup pizza sandwich cake fruit apple "
    "banana standing sitting walking running holding looking playing eating riding lying flying parked "
    "background foreground front side corner top bottom left right center detailed blurry colorful vintage "
    "modern rustic famous simple"
).split()
ACCENTED = ("café", "naïve", "jalapeño", "façade", "résumé", "crème", "São", "Zürich")
WORDS = (*VOCABULARY, *ACCENTED)


_WORD_CHARS = np.array([len(w) for w in WORDS])


def captions(start: int, stop: int, seed: int = CAPTION_SEED) -> list[str]:
    """The captions of samples [start, stop): deterministic in (seed, start, stop).

    The store's writer asks for one chunk at a time, so a chunk's captions
    are the same on every build with the same chunk size.
    """
    n = stop - start
    rng = np.random.default_rng([seed, start, stop])
    lengths = np.clip(np.rint(MEDIAN_CHARS * np.exp(rng.normal(0.0, LENGTH_SIGMA, n))), MIN_CHARS, MAX_CHARS)
    lengths = lengths.astype(np.int64)
    # One long run of words; every caption is a stretch of it starting on a word.
    words = rng.integers(0, len(VOCABULARY), max(256, int(lengths.sum()) // 4))
    accented = rng.random(len(words)) < ACCENTED_SHARE
    words[accented] = len(VOCABULARY) + rng.integers(0, len(ACCENTED), int(accented.sum()))
    text = " ".join([WORDS[w] for w in words.tolist()])
    word_starts = np.concatenate([[0], np.cumsum(_WORD_CHARS[words] + 1)[:-1]])
    usable = int(np.searchsorted(word_starts, len(text) - MAX_CHARS, side="right"))
    offsets = word_starts[rng.integers(0, max(usable, 1), n)].tolist()
    return [text[o].upper() + text[o + 1 : o + length - 1] + "." for o, length in zip(offsets, lengths.tolist())]


def _params(samples: int, chunk_samples: int | None) -> dict:
    return {"samples": samples, "chunk_samples": chunk_samples, "latent_shape": list(LATENT_SHAPE),
            "caption_seed": CAPTION_SEED, "generator": GENERATOR_VERSION}


def build(work: Path, samples: int, chunk_samples: int | None) -> tuple[Path, float | None, dict]:
    """The store under ``work``, built unless a complete one with the same parameters is there.

    Returns (path, seconds it took to build now or None when reused, caption statistics).
    """
    path = work / f"captions-{samples}.zarr"
    marker = work / f"captions-{samples}.json"
    params = _params(samples, chunk_samples)
    if marker.exists() and path.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("params") == params:
            try:
                complete = latentstore.open(path).metadata.complete
            except Exception:  # a damaged or half-deleted store is rebuilt
                complete = False
            if complete:
                return path, None, recorded["captions"]
    marker.unlink(missing_ok=True)
    if path.exists():
        shutil.rmtree(path)
    work.mkdir(parents=True, exist_ok=True)
    stats = {"count": 0, "chars": 0, "bytes": 0, "non_ascii": 0, "min": MAX_CHARS, "max": 0}

    def make(start, stop):
        values = captions(start, stop)
        chars = [len(v) for v in values]
        stats["count"] += len(values)
        stats["chars"] += sum(chars)
        stats["bytes"] += sum(len(v.encode()) for v in values)
        stats["non_ascii"] += sum(not v.isascii() for v in values)
        stats["min"], stats["max"] = min(stats["min"], min(chars)), max(stats["max"], max(chars))
        return values

    begin = time.perf_counter()
    synthetic.write_store(path, samples, LATENT_SHAPE, chunk_samples=chunk_samples, columns={"caption": ("text", make)})
    seconds = time.perf_counter() - begin
    stats["disk_bytes"] = sum(p.stat().st_size for p in (path / "columns" / "caption").rglob("*") if p.is_file())
    stats["build_seconds"] = seconds
    marker.write_text(json.dumps({"params": params, "captions": stats}, indent=1))
    return path, seconds, stats


def expected_captions(rows: np.ndarray, chunk_samples: int, samples: int) -> list[str]:
    """What the generator wrote for ``rows`` (regenerating each chunk they fall in)."""
    by_chunk = {}
    for chunk in np.unique(rows // chunk_samples).tolist():
        start = chunk * chunk_samples
        by_chunk[chunk] = captions(start, min(start + chunk_samples, samples))
    return [by_chunk[r // chunk_samples][r % chunk_samples] for r in rows.tolist()]


def run(path: Path, batch_size: int, thread_counts: list[int], seconds_scale: float, zarr_batches: int,
        rounds: int) -> tuple[dict, dict]:
    """(rates: threads -> method -> samples/s of every round, first: what the first reads after open cost)."""
    import zarr

    _report.warm_page_cache(path)
    # Once per process, not per store: numpy's first np.unique imports numpy.ma (~20-40 ms).
    np.unique(np.arange(3))
    opens = []
    fresh = []
    for _ in range(3):
        start = time.perf_counter()
        fresh.append(latentstore.open(path))
        opens.append(time.perf_counter() - start)
    m = fresh[0].metadata
    samples, chunk_samples = m.num_samples, m.chunk_samples
    calls = max(20, int(400 * seconds_scale))
    # The same fixed-seed batches, in the same order, for every method: each
    # round of best_rate makes 1 + calls calls, each on fresh rows.
    rng = np.random.default_rng(1)
    batches = rng.integers(0, samples, (rounds * (1 + calls), batch_size))

    def method(read):
        counter = iter(range(1 << 62))
        return lambda: read(batches[next(counter) % len(batches)])

    first: dict = {"open": min(opens), "chunks": m.num_chunks}
    # Cold: freshly opened stores, page cache warm, nothing read through them yet.
    start = time.perf_counter()
    fresh[0].read(batches[0])
    first["a"] = time.perf_counter() - start
    start = time.perf_counter()
    fresh[1].read(batches[0], columns=["caption"])
    first["b"] = time.perf_counter() - start
    first["b_chunks"] = len(np.unique(batches[0] // chunk_samples))
    store = fresh[2]
    start = time.perf_counter()
    store.column("caption", np.arange(0, samples, chunk_samples))  # one sample per chunk: every chunk's offsets
    first["all_chunks"] = time.perf_counter() - start
    # The warm-up pass: every sample once (faults in every page of every mapping).
    start = time.perf_counter()
    for begin in range(0, samples, 4096):
        store.read(slice(begin, min(begin + 4096, samples)), columns=["caption"])
    first["warm_pass"] = time.perf_counter() - start
    fresh[0].close()
    fresh[1].close()

    # Every method must agree before anything is timed.
    check = batches[0]
    latents, labels, columns = store.read(check, columns=["caption"])
    np.testing.assert_array_equal(latents, store.read(check)[0])
    got = store.column("caption", check)
    assert columns["caption"] == got and all(isinstance(v, str) for v in got)
    few = check[np.isin(check // chunk_samples, np.unique(check // chunk_samples)[:4])]
    assert store.column("caption", few) == expected_captions(few, chunk_samples, samples)
    zarr_captions = zarr.open_group(path, mode="r")["columns/caption"]
    order = np.argsort(check)
    from_zarr = zarr_captions.get_orthogonal_selection((check[order],))
    assert [str(v) for v in from_zarr] == [got[i] for i in order]

    out = np.empty((batch_size, *LATENT_SHAPE), np.float32)
    steps = {}
    for threads in thread_counts:
        steps[threads, "a"] = method(lambda idx, t=threads: store.read(idx, out=out, num_threads=t))
        steps[threads, "b"] = method(lambda idx, t=threads: store.read(idx, out=out, num_threads=t, columns=["caption"]))
        steps[threads, "c"] = method(lambda idx: store.column("caption", idx))  # one Python thread, whatever the count
    # Alternating rounds (a, b, c at each thread count, then again): a burst of
    # other work on a shared machine then costs one round of one method, not its figure.
    rates: dict = {threads: {"a": [], "b": [], "c": []} for threads in thread_counts}
    for _ in range(rounds):
        for (threads, key), step in steps.items():
            rates[threads][key].append(_report.best_rate(step, batch_size, calls=calls, repeats=1))
    # zarr-python uses none of the kernels' threads: one measurement stands for every count.
    zarr_rate = _report.best_rate(method(lambda idx: zarr_captions.get_orthogonal_selection((np.sort(idx),))),
                                  batch_size, calls=max(1, zarr_batches), repeats=2)
    for threads in thread_counts:
        rates[threads]["d"] = [zarr_rate]
    store.close()
    return rates, first


METHODS = [
    ("a", "store.read: latents + labels (reference)"),
    ("b", 'store.read(columns=["caption"]): latents + labels + captions'),
    ("c", 'store.column("caption"): captions alone (one thread)'),
    ("d", "zarr-python get_orthogonal_selection of columns/caption (one measurement)"),
]

TARGETS = [
    ("(b) / (a) >= 0.5", "b", "a", 0.5),
    ("(c) / (d) >= 100", "c", "d", 100.0),
]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def _per_batch(seconds: float) -> str:
    return f"{seconds * 1e6:,.0f} µs" if seconds < 0.01 else _ms(seconds)


def report(samples: int, batch_size: int, every: dict, first: dict, stats: dict, built: float | None,
           command: str, zarr_batches: int) -> str:
    counts = list(every)
    best = {threads: {key: max(values) for key, values in by_key.items()} for threads, by_key in every.items()}
    table = [[f"({key}) {name}", *(f"{best[t][key]:,.0f}" for t in counts),
              " / ".join(f"{best[t][key] / best[t]['a']:.3g}" for t in counts),
              " / ".join(_per_batch(batch_size / best[t][key]) for t in counts)] for key, name in METHODS]
    rounds_table = [[f"({key})", f"{t} thr", " / ".join(f"{v:,.0f}" for v in every[t][key])]
                    for key, _ in METHODS[:3] for t in counts]
    rounds = len(every[counts[0]]["a"])
    rates = best[counts[-1]]
    thr = [f"{t} thread{'s' if t > 1 else ''}" for t in counts]
    per_chunk = first["all_chunks"] / first["chunks"]
    caption_mb = stats["bytes"] / 1e6
    first_rows = [
        ["`latentstore.open` (maps every chunk file, loads scales and labels; best of 3)", _ms(first["open"])],
        ["first batch of (a) on a freshly opened store (default thread budget)", _ms(first["a"])],
        [f"first batch of (b) on a freshly opened store (finds the captions of the {first['b_chunks']} "
         f"chunks it touches)", _ms(first["b"])],
        [f"first touch of all {first['chunks']} caption chunks (one pass each: every caption's offset)",
         f"{_ms(first['all_chunks'])} ({_ms(per_chunk)} per chunk, {caption_mb / first['all_chunks']:,.0f} MB/s)"],
        ["warm-up: every sample once through (b), in slices of 4096", f"{first['warm_pass']:,.2f} s"],
        [f"a warm batch of (b) at {thr[-1]}, for comparison", _per_batch(batch_size / rates["b"])],
    ]
    target_rows = []
    for label, num, den, goal in TARGETS:
        values = [best[t][num] / best[t][den] for t in counts]
        target_rows.append([label, *(f"{v:,.2f}" for v in values), _report.verdict(all(v >= goal for v in values))])
    mean_chars = stats["chars"] / stats["count"]
    built_text = f"built in {built:,.0f} s this run" if built is not None else (
        f"reused from an earlier run (built in {stats['build_seconds']:,.0f} s)")
    return "\n".join([
        f"# Caption column: {samples:,} samples of {LATENT_SHAPE} int8 + one caption each, batches of {batch_size}",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. {synthetic.DESCRIPTION} "
        "(synthetic.write_store; not DC-AE; read speed does not depend on the values). "
        f"Captions: fixed-seed generator, {stats['min']}-{stats['max']} characters, mean {mean_chars:.1f} characters "
        f"({stats['bytes'] / stats['count']:.1f} bytes UTF-8; {stats['non_ascii'] / stats['count']:.1%} of them hold "
        f"a non-ASCII character: decoding such a caption to str costs about twice an ASCII one, so text with "
        f"more of them reads slower in (b) and (c)), {caption_mb:,.1f} MB of text in all, "
        f"{stats['disk_bytes'] / 1e6:,.1f} MB on disk (vlen-utf8 + crc32c). Store {built_text}. "
        "Warm page cache; the same fixed-seed random batches for every method, fresh rows for every batch; "
        f"(a)-(c) best of {rounds} alternating rounds after a warm-up pass over every sample, (d) best of 2 runs of "
        f"{max(1, zarr_batches)} batch{'es' if zarr_batches > 1 else ''}; (a) and (b) fill a preallocated float32 "
        f"batch. Command: `{command}`.",
        "",
        "## Warm steady state",
        "",
        _report.markdown_table(["method", *(f"{t}: samples/s" for t in thr), "x reference (a)", "per batch"], table),
        "",
        "Every round (samples/s), in the order run:",
        "",
        _report.markdown_table(["method", "threads", "rounds"], rounds_table),
        "",
        "## Open and first touch (page cache warm)",
        "",
        _report.markdown_table(["step", "time"], first_rows),
        "",
        "## Targets (ratios in the same run, per thread count)",
        "",
        _report.markdown_table(["target", *(f"{t} thr" for t in counts), "verdict"], target_rows),
        "",
    ])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-samples", type=int, default=None, help="default: the store's (~32 MiB of latents)")
    parser.add_argument("--zarr-batches", type=int, default=3, help="batches per timed run of (d)")
    parser.add_argument("--work", type=Path, default=None,
                        help="where to build the store and keep it for reruns (default: a temporary directory)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table")
    parser.add_argument("--name", default="captions", help="results file name")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="kernel threads of (a) and (b)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timed rounds of (a)-(c)")
    parser.add_argument("--quick", action="store_true", help="fewer timed batches (smoke runs)")
    args = parser.parse_args(argv)
    command = _report.command_line("captions.py", parser, args)
    with tempfile.TemporaryDirectory() if args.work is None else contextlib.nullcontext(args.work) as work:
        path, built, stats = build(Path(work), args.samples, args.chunk_samples)
        rates, first = run(path, args.batch_size, args.threads, 0.05 if args.quick else 1.0, args.zarr_batches,
                           max(1, args.rounds))
    text = report(args.samples, args.batch_size, rates, first, stats, built, command, args.zarr_batches)
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
