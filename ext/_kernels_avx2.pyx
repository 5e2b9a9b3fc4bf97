# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# The kernels, compiled with -mavx2 (see setup.py and latentstore._native).
include "_kernels.pxi"
