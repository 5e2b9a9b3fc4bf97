"""Pick the compiled kernels for this CPU.

The kernels are built twice from one source (``ext/_kernels.pxi``): for the
baseline instruction set, and on x86-64 with AVX2. Both give identical bytes
(the tests check each against the numpy reference); the AVX2 build is used
when numpy reports the CPU supports it. ``LATENTSTORE_KERNELS=baseline``
forces the baseline build.
"""

import os


def _cpu_has_avx2() -> bool:
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__  # type: ignore[no-redef]
        except ImportError:
            return False
    return bool(__cpu_features__.get("AVX2"))


def _load():
    choice = os.environ.get("LATENTSTORE_KERNELS", "auto")
    if choice not in ("auto", "baseline", "avx2"):
        raise ValueError(f"LATENTSTORE_KERNELS must be 'auto', 'baseline' or 'avx2', got {choice!r}")
    if choice != "baseline" and (choice == "avx2" or _cpu_has_avx2()):
        try:
            from latentstore.quantization import _kernels_avx2

            return _kernels_avx2, "avx2"
        except ImportError:
            if choice == "avx2":
                raise ImportError("LATENTSTORE_KERNELS=avx2, but this build has no AVX2 kernels") from None
    from latentstore.quantization import _kernels

    return _kernels, "baseline"


kernels, variant = _load()
