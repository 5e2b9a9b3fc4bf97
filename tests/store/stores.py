"""The small store every test of the store layer reads: 300 synthetic samples in chunks of 64."""

import latentstore

N, SHAPE, CHUNK = 300, (4, 4, 4), 64


def write_store(path, x, *, labels=None, valid=None, flip=False, chunk=CHUNK, **options):
    writer = latentstore.create(path, len(x), x.shape[1:], chunk_samples=chunk, flip=flip, **options)
    for start in range(0, len(x), chunk):
        block = slice(start, start + chunk)
        writer.write(
            start,
            x[block],
            labels=None if labels is None else labels[block],
            valid=None if valid is None else valid[block],
            flip_latents=-x[block] if flip else None,
        )
    writer.close()
    return latentstore.open(path)



def expected_values(store, x, rows):
    q, s = latentstore.quantize(x[rows], store.metadata.quant.granularity)
    return latentstore.dequantize(q, s)
