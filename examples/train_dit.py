"""Train a tiny class- or text-conditional DiT with flow matching on a latent store.

    python examples/train_dit.py imagenet-dcae.zarr --steps 1000 --batch-size 256 --device cuda
    python examples/train_dit.py cc12m-dcae.zarr --captions caption,caption_long --device cuda

A minimal, readable loop, not a recipe: a small transformer over (C, H, W)
latents split into patches, conditioned on the timestep and the class label
with adaptive layer norm (as in DiT, Peebles & Xie 2023), trained with the
rectified-flow objective: x_t = (1 - t) x_0 + t ε, predict v = ε - x_0.
Data comes from ``latentstore.torch.LatentLoader``: normalised latents, stored
horizontal flips when the store has them, one shard per rank under
``torchrun``, resumable from the loader's ``state_dict``.

With ``--captions`` (text columns of a captioned store) the model is
conditioned on text instead of the class: each step draws one of the given
caption columns per sample (``LatentLoader(caption_choice=...)``, a function of
(seed, epoch, sample)), and a small byte-level transformer, trained with the
DiT from scratch, turns it into the conditioning vector; 10% of captions are
dropped for classifier-free guidance. It stands in for the pretrained text
encoder a real model would use (SANA uses Gemma 2), so the data path is
exercised end to end without any download.
"""

import argparse
import math

import torch
from torch import nn

import latentstore
from latentstore.torch import LatentLoader


class TimestepEmbedding(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.width = width
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.width // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, device=t.device) / half)
        angles = 1000 * t[:, None] * freqs[None]
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class DiTBlock(nn.Module):
    """Self-attention and MLP, each modulated (shift, scale, gate) by the conditioning."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(nn.functional.silu(c))[:, None].chunk(6, dim=2)
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + gate1 * self.attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x) * (1 + scale2) + shift2
        return x + gate2 * self.mlp(h)


class ByteTextEncoder(nn.Module):
    """Text to one conditioning vector: UTF-8 bytes, embedded, one transformer layer, mean-pooled."""

    def __init__(self, width: int, heads: int = 4, max_bytes: int = 128):
        super().__init__()
        self.max_bytes = max_bytes
        self.bytes = nn.Embedding(257, width, padding_idx=256)  # 256: padding
        self.position = nn.Parameter(torch.randn(1, max_bytes, width) * 0.02)
        self.layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True)
        self.empty = nn.Parameter(torch.zeros(width))  # the embedding of "no caption"

    def tokenize(self, texts: list[str], device) -> torch.Tensor:
        ids = torch.full((len(texts), self.max_bytes), 256, dtype=torch.long)
        for i, text in enumerate(texts):
            data = text.encode("utf-8")[: self.max_bytes]
            ids[i, : len(data)] = torch.tensor(list(data), dtype=torch.long)
        return ids.to(device)

    def forward(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenize(texts, self.position.device)
        padding = ids == 256
        empty = padding.all(dim=1)
        h = self.layer(self.bytes(ids) + self.position, src_key_padding_mask=padding & ~empty[:, None])
        keep = (~padding).unsqueeze(-1).float()
        pooled = (h * keep).sum(1) / keep.sum(1).clamp(min=1)
        return torch.where(empty[:, None], self.empty.expand_as(pooled), pooled)


def sincos_positions(rows: int, columns: int, width: int, device=None) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings (1, rows * columns, width), for any grid (as in MAE and SANA)."""
    quarter = width // 4
    freqs = 1.0 / 10000 ** (torch.arange(quarter, device=device) / quarter)
    y, x = torch.meshgrid(torch.arange(rows, device=device), torch.arange(columns, device=device), indexing="ij")
    angles_y, angles_x = y.reshape(-1, 1) * freqs, x.reshape(-1, 1) * freqs
    embedding = torch.cat([angles_y.sin(), angles_y.cos(), angles_x.sin(), angles_x.cos()], dim=1)
    return nn.functional.pad(embedding, (0, width - 4 * quarter))[None]


class TinyDiT(nn.Module):
    """``latent_shape`` (C, H, W) for a store of one shape, with learned positions; (C, None, None)
    for a bucketed store, whose batches come in many shapes: fixed sine-cosine positions then."""

    def __init__(self, latent_shape, num_classes: int, width: int = 128, depth: int = 4, heads: int = 4, patch: int = 1,
                 text: bool = False):
        super().__init__()
        channels, height, width_px = latent_shape
        self.channels, self.patch = channels, patch
        self.embed = nn.Linear(channels * patch * patch, width)
        self.position = None
        if height is not None:
            tokens = (height // patch) * (width_px // patch)
            self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.time = TimestepEmbedding(width)
        self.label = nn.Embedding(num_classes + 1, width)  # the last index: no label
        self.text = ByteTextEncoder(width, heads) if text else None
        self.blocks = nn.ModuleList(DiTBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, channels * patch * patch)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, captions: list[str] | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        p = self.patch
        tokens = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = self.embed(tokens)
        x = x + (self.position if self.position is not None else sincos_positions(h // p, w // p, x.shape[-1], x.device))
        cond = self.time(t) + (self.label(labels) if self.text is None else self.text(captions))
        for block in self.blocks:
            x = block(x, cond)
        x = self.out(self.norm(x))
        return x.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor, captions=None) -> torch.Tensor:
    t = torch.rand(x0.shape[0], device=x0.device)
    noise = torch.randn_like(x0)
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
    return nn.functional.mse_loss(model(xt, t, labels, captions), noise - x0)


#: Share of captions dropped in training, so the model also learns the unconditional velocity (CFG).
CAPTION_DROPOUT = 0.1


def train(store_path, steps: int, batch_size: int, device: str = "cpu", lr: float = 1e-4, log_every: int = 10, seed: int = 0,
          captions: list[str] | None = None, **model_options):
    """Run ``steps`` optimisation steps; return (model, losses). ``captions``: text columns to condition on."""
    torch.manual_seed(seed)
    store = latentstore.open(store_path)
    num_classes = len(store.classes) if store.classes else int(store.labels.max()) + 1
    normalize = store.metadata.stats is not None  # per-channel (x - mean) / std when the store has stats
    loader = LatentLoader(
        store, batch_size, seed=seed, drop_last=True, device=device,
        flip_prob=0.5 if store.has_flip else 0.0, normalize=normalize,
        caption_choice=captions or None,
    )
    if len(loader) == 0:
        raise ValueError(f"{store_path} has fewer valid samples than one batch of {batch_size}; lower --batch-size")
    shape = store.latent_shape if store.bucket_table is None else (store.latent_shape[0], None, None)
    model = TinyDiT(shape, max(num_classes, 0), text=bool(captions), **model_options).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0)
    dropout = torch.Generator().manual_seed(seed)
    losses = []
    while len(losses) < steps:
        for latents, labels, *columns in loader:
            labels = torch.where(labels < 0, num_classes, labels).to(device)  # -1 (unknown) -> "no label"
            texts = None
            if columns:
                drop = (torch.rand(len(labels), generator=dropout) < CAPTION_DROPOUT).tolist()
                texts = ["" if d else text for d, text in zip(drop, columns[0]["caption"])]
            loss = flow_matching_loss(model, latents.to(device), labels, texts)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if len(losses) % log_every == 0 or len(losses) == steps:
                print(f"step {len(losses)}  epoch {loader.epoch}  loss {loss.item():.4f}", flush=True)
            if len(losses) == steps:
                break
    return model, losses


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="path of a latent store")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--captions", default=None, metavar="COLUMN[,COLUMN...]",
                        help="condition on text: one of these text columns per sample and epoch (e.g. caption,caption_long)")
    args = parser.parse_args(argv)
    captions = args.captions.split(",") if args.captions else None
    train(args.store, args.steps, args.batch_size, args.device, args.lr, args.log_every, captions=captions,
          width=args.width, depth=args.depth)


if __name__ == "__main__":
    main()
