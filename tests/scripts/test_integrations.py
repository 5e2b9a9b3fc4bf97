"""docs/integrations.md runs: each codebase's adapter feeds a tiny stand-in training step (not the codebase's code)."""

import numpy as np
import pytest

import latentstore
from tests.docs_code import python_blocks
from tests.paths import REPO

torch = pytest.importorskip("torch")

PAGE = REPO / "docs" / "integrations.md"
SECTIONS = ["LightningDiT", "fast-DiT, DiT and SiT", "REPA", "MAR", "accelerate"]


class StandIn(torch.nn.Module):
    """A class-conditional linear denoiser: enough to show batches flow and a step learns."""

    def __init__(self, channels, classes=10):
        super().__init__()
        self.embed = torch.nn.Embedding(classes, channels)
        self.mix = torch.nn.Conv2d(channels, channels, 1)

    def forward(self, x, y):
        return self.mix(x) + self.embed(y % self.embed.num_embeddings)[:, :, None, None]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("integrations")
    made = {}
    for channels in (4, 16):
        x = (np.random.default_rng(channels).standard_t(4, size=(64, channels, 4, 4)) * 1.7).astype(np.float32)
        path = root / f"c{channels}.zarr"
        with latentstore.create(path, 64, (channels, 4, 4), chunk_samples=16, flip=True) as writer:
            for start in range(0, 64, 16):
                writer.write(start, x[start : start + 16], labels=np.arange(start, start + 16) % 10,
                             flip_latents=x[start : start + 16, :, :, ::-1].copy())
        stats_path = root / f"c{channels}-latents_stats.pt"
        t = torch.from_numpy(latentstore.open(path).read(np.arange(64))[0])
        torch.save({"mean": t.mean(dim=[0, 2, 3], keepdim=True), "std": t.std(dim=[0, 2, 3], keepdim=True)}, stats_path)
        made[channels] = (path, stats_path)
    return made


@pytest.mark.parametrize("title", SECTIONS)
def test_each_adapter_feeds_the_training_step(stores, tmp_path, title):
    if title == "accelerate":
        pytest.importorskip("accelerate")
    channels = 16 if title == "MAR" else 4
    store_path, stats_path = stores[channels]
    model = StandIn(channels)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    seen = []

    def train_step(x, y):
        assert x.dtype == torch.float32 and x.shape[1:] == (channels, 4, 4) and y.dtype == torch.int64
        assert torch.isfinite(x).all()
        loss = torch.nn.functional.mse_loss(model(x, y), torch.zeros_like(x))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen.append(y.tolist())

    namespace = dict(store_path=str(store_path), stats_path=str(stats_path), train_step=train_step,
                     checkpoint_dir=str(tmp_path / "checkpoint"))
    blocks = python_blocks("integrations.md", title)
    assert blocks, f"no code in section {title}"
    for code in blocks:
        exec(compile(code, f"docs/integrations.md ({title})", "exec"), namespace)
    assert seen
    if title == "accelerate":
        full = [y.tolist() for _, y in latentstore.torch.LatentLoader(str(store_path), batch_size=8, seed=0)]
        assert [y.tolist() for y in namespace["rest"]] == full[2:]
        assert [y.tolist() for y in namespace["skipped"]] == full[2:]


def test_every_section_of_the_page_is_tested():
    titles = [line[3:] for line in PAGE.read_text().splitlines() if line.startswith("## ")]
    assert titles == SECTIONS
