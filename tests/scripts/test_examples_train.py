"""examples/train_dit.py runs a few flow-matching steps on CPU and learns."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from examples import train_dit  # noqa: E402

pytestmark = pytest.mark.slow  # a few training steps of the example

@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """24 synthetic heavy-tailed latents (4, 4, 4) of 3 classes, with flips; sample 5 invalid."""
    rng = np.random.default_rng(0)
    synthetic = lambda: (rng.standard_t(4, size=(24, 4, 4, 4)) * 1.7).astype(np.float32)  # noqa: E731
    path = tmp_path_factory.mktemp("train") / "tiny.zarr"
    valid = np.ones(24, bool)
    valid[5] = False
    with latentstore.create(path, 24, (4, 4, 4), chunk_samples=8, flip=True, classes=["a", "b", "c"]) as writer:
        latents, flipped = synthetic(), synthetic()
        for start in range(0, 24, 8):
            part = slice(start, start + 8)
            writer.write(start, latents[part], labels=np.arange(start, start + 8) % 3, valid=valid[part], flip_latents=flipped[part])
    return path


def test_a_few_steps_give_finite_losses_and_move_the_weights(store_path, capsys):
    options = dict(width=32, depth=2, heads=2)
    torch.manual_seed(0)
    initial = train_dit.TinyDiT((4, 4, 4), 3, **options).state_dict()
    model, losses = train_dit.train(store_path, steps=6, batch_size=8, lr=1e-3, log_every=2, seed=0, **options)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    changed = [name for name, value in model.state_dict().items() if not torch.equal(value, initial[name])]
    assert "out.weight" in changed and "embed.weight" in changed
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in printed] == ["2", "4", "6"]  # 23 valid samples: 2 batches an epoch, 3 epochs


def test_command_line(store_path, capsys):
    train_dit.main([str(store_path), "--steps", "2", "--batch-size", "4", "--device", "cpu", "--width", "16", "--depth", "1", "--log-every", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(math.isfinite(float(line.split()[-1])) for line in lines)


def test_a_store_smaller_than_a_batch_is_a_clear_error(store_path):
    with pytest.raises(ValueError, match="lower --batch-size"):
        train_dit.train(store_path, steps=1, batch_size=64)


@pytest.fixture(scope="module")
def captioned_store(tmp_path_factory):
    """24 synthetic latents with two caption columns; no classes."""
    rng = np.random.default_rng(1)
    path = tmp_path_factory.mktemp("train-text") / "captioned.zarr"
    columns = {"caption": "text", "caption_long": "text"}
    with latentstore.create(path, 24, (4, 4, 4), chunk_samples=8, columns=columns) as writer:
        for start in range(0, 24, 8):
            rows = range(start, start + 8)
            writer.write(start, (rng.standard_t(4, size=(8, 4, 4, 4)) * 1.7).astype(np.float32), columns={
                "caption": [f"a {['red', 'green'][i % 2]} thing" for i in rows],
                "caption_long": [f"a picture of a {['red', 'green'][i % 2]} thing, number {i} ✓" for i in rows]})
    return path


def test_text_conditioned_training_learns_from_the_captions(captioned_store, capsys):
    options = dict(width=32, depth=2, heads=2)
    torch.manual_seed(0)
    initial = train_dit.TinyDiT((4, 4, 4), 0, text=True, **options).state_dict()
    model, losses = train_dit.train(captioned_store, steps=6, batch_size=8, lr=1e-3, log_every=3,
                                    captions=["caption", "caption_long"], **options)
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, initial[name])}
    assert {"text.bytes.weight", "text.layer.linear1.weight", "out.weight"} <= changed
    with torch.no_grad():  # the conditioning depends on the text
        a, b = model.text(["a red thing", "a green thing"])
        assert not torch.allclose(a, b)
    train_dit.main([str(captioned_store), "--steps", "1", "--batch-size", "4", "--device", "cpu", "--width", "16",
                    "--depth", "1", "--captions", "caption"])
    with pytest.raises(ValueError, match="text columns"):
        train_dit.train(captioned_store, steps=1, batch_size=4, captions=["nope"])


def test_training_on_a_bucketed_store_takes_every_shape(tmp_path, capsys):
    from latentstore.format import BucketTable
    from latentstore.store.writer import pack_buckets

    table = BucketTable.from_base(128, 32)  # (2, 8) ... (8, 2): 16 tokens
    rng = np.random.default_rng(2)
    latents = [(rng.standard_t(4, size=(4, *table.shapes[i % len(table.shapes)])) * 1.7).astype(np.float32) for i in range(40)]
    rows, buckets = pack_buckets(latents, table)
    with latentstore.create(tmp_path / "b.zarr", 40, (4,), chunk_samples=16, buckets=table, classes=["a", "b"]) as writer:
        for start in range(0, 40, 16):
            part = slice(start, start + 16)
            writer.write(start, rows[part], buckets=buckets[part], labels=np.arange(40)[part] % 2)
    model, losses = train_dit.train(tmp_path / "b.zarr", steps=8, batch_size=4, lr=1e-3, log_every=4, width=32, depth=1, heads=2)
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    assert model.position is None  # sine-cosine positions for any grid
    with torch.no_grad():
        for h, w in table.shapes:
            assert model(torch.zeros(2, 4, h, w), torch.rand(2), torch.zeros(2, dtype=torch.long)).shape == (2, 4, h, w)
