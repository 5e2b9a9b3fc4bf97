"""What every importer shares: the affine range, filling a store chunk by chunk, requantizing.

An importer supplies ``read_chunk(start, stop) -> (codes, labels, ids[, flip])``
for samples [start, stop): the source's uint8 codes, or float latents when the
source is a float cache (``source_quant=None``). :func:`fill_store` writes every
pending chunk of the store from it, either copying the codes unchanged
(``affine`` store: lossless) or turning them into absmax int8 (``requantize``,
always for floats) while measuring the error that adds.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from latentstore.format import QuantSpec
from latentstore.progress import Progress
from latentstore.quantization.kernels import dequantize, quantize

#: Codes of the imported formats are uint8: the range [low, high] maps to 0..255.
CODE_LEVELS = 255


def affine_spec(low: float, high: float) -> QuantSpec:
    """The ``affine`` scheme mapping code 0 to ``low`` and code 255 to ``high``: x = q * scale + low."""
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"the value range must be two finite numbers LOW < HIGH, got [{low}, {high}]")
    return QuantSpec.affine((high - low) / CODE_LEVELS, low)


def affine_range(spec: QuantSpec) -> list[float]:
    """[low, high] of an affine spec made by :func:`affine_spec`."""
    return [spec.offset, spec.offset + spec.scale * CODE_LEVELS]


@dataclass(frozen=True)
class ImportReport:
    """What an import did: where, how many samples, how they are stored, what it cost."""

    store: str
    samples: int
    chunks_written: int
    quant: dict
    source: dict
    #: None for a lossless copy; else the error requantizing added (see :class:`ErrorMeter`).
    requantization: dict | None
    seconds: float

    def summary(self) -> str:
        quant = self.quant
        if quant["scheme"] == "affine":
            how = f"affine uint8 codes copied unchanged (x = q * {quant['scale']:.9g} + {quant['offset']:.9g}): lossless"
        else:
            how = f"requantized to absmax int8, one float16 scale per {quant['granularity']}"
        lines = [
            f"imported {self.samples:,} samples into {self.store} in {self.seconds:.1f} s "
            f"({self.chunks_written} chunks written)",
            f"  {how}",
        ]
        if self.requantization is not None:
            e = self.requantization
            lines.append(
                f"  error added vs the source's values: MSE {e['mse']:.4g}, max abs {e['max_abs']:.4g}, "
                f"SNR {e['snr_db']:.1f} dB over {e['values']:,} values"
            )
        return "\n".join(lines)


class ErrorMeter:
    """Accumulates the error of requantized values against the values they replace."""

    def __init__(self):
        self.values = 0
        self.squared_error = 0.0
        self.signal = 0.0
        self.max_abs = 0.0

    def add(self, reference: np.ndarray, approximation: np.ndarray) -> None:
        diff = approximation.astype(np.float64) - reference
        self.values += diff.size
        self.squared_error += float(np.dot(diff.ravel(), diff.ravel()))
        self.signal += float(np.dot(reference.ravel().astype(np.float64), reference.ravel()))
        if diff.size:
            self.max_abs = max(self.max_abs, float(np.abs(diff).max()))

    def to_dict(self) -> dict:
        mse = self.squared_error / max(self.values, 1)
        snr = 10 * math.log10(self.signal / self.squared_error) if self.squared_error else math.inf
        return {"values": self.values, "mse": mse, "max_abs": self.max_abs, "snr_db": snr}


def fill_store(writer, read_chunk, *, source_quant: QuantSpec, progress: bool = False, description: str = "import") -> dict | None:
    """Write every pending chunk of ``writer`` from ``read_chunk(start, stop) -> (codes, labels, ids)``.

    ``codes`` are the source's codes under ``source_quant`` (affine). An
    affine store gets them unchanged; an absmax store gets them dequantized
    through ``source_quant``'s lookup table and requantized, and the return
    value is then the error that added (an :class:`ErrorMeter` dict), else
    None. Finalizes the store (stats, complete).
    """
    m = writer.metadata
    requantize = m.quant.has_scales
    lut = None if source_quant is None else source_quant.lookup_table()
    meter = ErrorMeter() if requantize else None

    def stored(codes):
        if not requantize:
            return codes
        values = np.ascontiguousarray(codes if lut is None else lut[codes], dtype=np.float32)
        q, scales = quantize(values, m.quant.granularity)
        meter.add(values, dequantize(q, scales))
        return q, scales

    pending = writer.pending_chunks()
    bar = Progress(sum(stop - start for start, stop in map(m.chunk_range, pending)), description, unit="sample", enabled=progress)
    try:
        for chunk in pending:
            start, stop = m.chunk_range(chunk)
            codes, labels, ids, *flip = read_chunk(start, stop)
            flip_codes = stored(flip[0]) if flip and flip[0] is not None else None
            writer.write(start, codes=stored(codes), labels=labels, ids=ids, flip_codes=flip_codes)
            bar.update(stop - start)
    finally:
        bar.close()
    report = meter.to_dict() if meter is not None else None
    if report is not None:
        writer.update_metadata(requantization_error=report)
    writer.finalize()
    return report


def run_import(out, dataset, *, source_quant: QuantSpec, requantize: bool, progress: bool, description: str,
               **store_options) -> ImportReport:
    """Create (or resume) the store for ``dataset``, fill it and describe what was done.

    ``dataset`` has ``len()``, ``latent_shape`` and ``read(start, stop) -> (codes, labels, ids)``;
    ``store_options`` go to :func:`latentstore.create`. The store keeps the source's
    codes (``source_quant``) unless ``requantize`` makes it per-sample absmax int8.
    """
    from latentstore.store.writer import create

    started = time.perf_counter()
    if source_quant is None and not requantize:
        raise ValueError("a float source is always requantized")
    writer = create(out, len(dataset), dataset.latent_shape, quant=None if requantize else source_quant, **store_options)
    chunks = len(writer.pending_chunks())
    error = fill_store(writer, dataset.read, source_quant=source_quant, progress=progress, description=description)
    m = writer.metadata
    return ImportReport(
        store=str(out),
        samples=m.num_samples,
        chunks_written=chunks,
        quant=m.quant.to_dict(),
        source=m.source,
        requantization=error,
        seconds=time.perf_counter() - started,
    )
