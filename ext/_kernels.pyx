# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# The kernels, compiled for the baseline instruction set.
include "_kernels.pxi"
