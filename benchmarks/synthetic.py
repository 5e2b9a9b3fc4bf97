"""Synthetic stand-ins for DC-AE latents, for benchmarks that have no real ones.

These are NOT autoencoder outputs: no trained DC-AE weights can be
downloaded on the machines these benchmarks run on. They are random numbers
shaped to have the statistics that decide how a storage scheme behaves
(range, tails, per-channel and per-image variation), so every table made
from them must say "synthetic".

The distribution, for a sample n, channel c and position (h, w)::

    z[n, c, h, w] = k * (offset[c] + scale[c] * sigma[n] * t[n, c, h, w])

- ``t`` ~ Student-t with ``DOF`` = 6 degrees of freedom, independent per
  value: heavier tails than a Gaussian (kurtosis 6 instead of 3, about 13
  for the whole mixture), yet a finite fourth moment, so the largest of
  millions of values stays within a few tens; a fixed clamp such as
  Imagenet.3GB's ±6.5 clips about 2% of the values (a Gaussian of the same
  std would lose 0.7%), the per-sample absmax is typically 6 std;
- ``sigma[n]`` ~ lognormal, ``exp(0.3 N(0, 1))``: a per-image gain (flat
  images give small latents, busy ones large; a Gaussian scale mixture
  across samples), which is what makes a per-sample scale pay off;
- ``offset[c]`` ~ N(0, 0.5²) and ``scale[c]`` = ``exp(0.35 N(0, 1))``: each
  channel has its own mean and spread, as VAE latent channels do (the
  reason LightningDiT and others normalise per channel); per-channel
  quantization exploits this;
- ``k`` makes the overall standard deviation ``TARGET_STD`` = 2.4 in
  expectation: DESIGN.md infers std ≈ 1 / 0.41407 from DC-AE's
  ``scaling_factor``, assuming that, as for SD's VAE, it was chosen to
  bring latents to unit variance.

The channel profile (offsets and scales) is fixed by ``PROFILE_SEED`` and
the number of channels, like a model's; ``seed`` draws the samples. Values
are independent across positions: real latents are spatially correlated,
which no byte-wise lossless codec on int8 codes exploits much, so the
missing correlation biases compression ratios only slightly.
"""

import numpy as np

TARGET_STD = 2.4
DOF = 6
SAMPLE_GAIN_SIGMA = 0.3
CHANNEL_OFFSET_STD = 0.5
CHANNEL_SCALE_SIGMA = 0.35
PROFILE_SEED = 20250101

#: What every table built on these latents should say about them.
DESCRIPTION = (
    "SYNTHETIC latents (not from any autoencoder): per-channel offsets and scales, "
    f"lognormal per-sample gain, Student-t ({DOF} dof) values, overall std about {TARGET_STD}"
)


def channel_profile(channels: int) -> tuple[np.ndarray, np.ndarray, float]:
    """(offset[c], scale[c], k) of the distribution above, for ``channels`` channels."""
    if channels < 1:
        raise ValueError(f"latents need at least one channel, got {channels}")
    rng = np.random.default_rng([PROFILE_SEED, channels])
    offsets = rng.normal(0.0, CHANNEL_OFFSET_STD, channels)
    scales = np.exp(rng.normal(0.0, CHANNEL_SCALE_SIGMA, channels))
    # Var(z / k) about the grand mean: the spread of the channel offsets plus
    # the mean within-channel variance, E[scale² sigma² t²].
    gain_power = np.exp(2 * SAMPLE_GAIN_SIGMA**2)
    variance = offsets.var() + np.mean(scales**2) * gain_power * DOF / (DOF - 2)
    return offsets, scales, TARGET_STD / float(np.sqrt(variance))


def synthetic_latents(n: int, shape=(32, 8, 8), seed: int = 0) -> np.ndarray:
    """``n`` synthetic latents of ``shape`` (C, H, W) as float32; see the module docstring.

    Deterministic in ``(n, shape, seed)``; different seeds give independent
    samples of the same distribution.
    """
    shape = tuple(int(d) for d in shape)
    if n < 0 or not shape or min(shape) < 1:
        raise ValueError(f"need n >= 0 and a latent shape (C, ...) of positive sizes, got n={n}, shape={shape}")
    offsets, scales, k = channel_profile(shape[0])
    rng = np.random.default_rng(seed)
    broadcast = (1, shape[0]) + (1,) * (len(shape) - 1)
    gain = np.exp(rng.normal(0.0, SAMPLE_GAIN_SIGMA, n)).reshape((n,) + (1,) * len(shape))
    z = rng.standard_t(DOF, size=(n, *shape))
    z *= gain
    z *= (k * scales).reshape(broadcast)
    z += (k * offsets).reshape(broadcast)
    return z.astype(np.float32)


def write_store(path, samples: int, shape=(32, 8, 8), pool: int = 16384, seed: int = 0, *,
                chunk_samples: int | None = None, columns: dict | None = None) -> None:
    """A finished store of ``samples`` SYNTHETIC latents: a pool of :func:`synthetic_latents`,
    quantized once and repeated (read and transfer speeds do not depend on the values).

    ``columns`` adds per-sample columns, ``{name: (kind, values)}``: ``kind`` as for
    ``latentstore.create`` ("text", "bytes", "int32", ...) and ``values(start, stop)`` the
    column's values for samples [start, stop), called once per chunk (so a large column
    is never held whole).
    """
    import latentstore

    columns = columns or {}
    q, s = latentstore.quantize(synthetic_latents(min(pool, samples), shape, seed=seed))
    kinds = {name: kind for name, (kind, _) in columns.items()} or None
    with latentstore.create(path, samples, shape, chunk_samples=chunk_samples, columns=kinds) as writer:
        step = writer.metadata.chunk_samples
        for start in range(0, samples, step):
            stop = min(start + step, samples)
            rows = np.arange(start, stop) % len(q)
            values = {name: make(start, stop) for name, (_, make) in columns.items()} or None
            writer.write(start, codes=(q[rows], s[rows]), labels=np.zeros(len(rows), int), columns=values)


def bucket_pools(table, channels: int = 32, pool: int = 4096, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per bucket of ``table`` (a ``latentstore.format.BucketTable``), ``pool`` SYNTHETIC latents of
    its shape (channels, h, w), quantized: ``[(q (pool, C, h, w) int8, scales (pool,) float16)]``.

    Deterministic in ``(table.shapes, channels, pool, seed)``; bucket b's latents are drawn with
    the seed ``[seed, b]``, so the buckets are independent.
    """
    import latentstore

    return [latentstore.quantize(synthetic_latents(pool, (channels, h, w), seed=[seed, b]))
            for b, (h, w) in enumerate(table.shapes)]


def write_bucketed_store(path, buckets, table, channels: int = 32, pool: int = 4096, seed: int = 0, *,
                         chunk_samples: int | None = None) -> None:
    """A finished multi-aspect store of SYNTHETIC latents: sample i is in bucket ``buckets[i]`` of
    ``table`` and holds row ``i % pool`` of that bucket's :func:`bucket_pools` (quantized once,
    repeated), stored padded to ``(channels, table.max_tokens)`` and written whole chunks at a time.
    """
    import latentstore
    from latentstore.store.writer import pack_buckets

    buckets = np.asarray(buckets)
    pools = bucket_pools(table, channels, pool, seed)
    # Every pool packed once into padded rows, stacked: bucket b's row r is row b * pool + r.
    rows = np.concatenate([pack_buckets(list(q), table)[0] for q, _ in pools])
    scales = np.concatenate([s for _, s in pools])
    with latentstore.create(path, len(buckets), (channels,), buckets=table, chunk_samples=chunk_samples) as writer:
        step = writer.metadata.chunk_samples
        for start in range(0, len(buckets), step):
            stop = min(start + step, len(buckets))
            which = buckets[start:stop].astype(np.int64) * pool + np.arange(start, stop) % pool
            writer.write(start, codes=(rows[which], scales[which]), labels=np.zeros(stop - start, int),
                         buckets=buckets[start:stop])
