"""Encoding images into stores, and decoding stores back to images.

:mod:`.sources` (which images, in which order, with which labels),
:mod:`.preprocess` (image files to model inputs), :mod:`.backends` (the
autoencoders), :mod:`.pipeline` (the resumable multi-GPU encode run) and
:mod:`.decoding` (latents back to pixels). These modules import torch,
diffusers and Pillow themselves; importing this package imports none of them.
"""
