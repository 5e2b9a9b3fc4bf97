"""Looking at stores: :mod:`.info` (what a store holds and costs),
:mod:`.verify` (damage), :mod:`.stats` (recomputed statistics),
:mod:`.metrics` (PSNR, SSIM) and :mod:`.grid` (picture grids).
"""
