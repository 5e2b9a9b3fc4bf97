"""Train a tiny class-conditional DiT with flow matching on a latent store.

    python examples/train_dit.py imagenet-dcae.zarr --steps 1000 --batch-size 256 --device cuda

A minimal, readable loop, not a recipe: a small transformer over (C, H, W)
latents split into patches, conditioned on the timestep and the class label
with adaptive layer norm (as in DiT, Peebles & Xie 2023), trained with the
rectified-flow objective: x_t = (1 - t) x_0 + t ε, predict v = ε - x_0.
Data comes from ``latentstore.torch.LatentLoader``: normalised latents, stored
horizontal flips when the store has them, one shard per rank under
``torchrun``, resumable from the loader's ``state_dict``.
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


class TinyDiT(nn.Module):
    def __init__(self, latent_shape, num_classes: int, width: int = 128, depth: int = 4, heads: int = 4, patch: int = 1):
        super().__init__()
        channels, height, width_px = latent_shape
        self.latent_shape, self.patch = tuple(latent_shape), patch
        tokens = (height // patch) * (width_px // patch)
        self.embed = nn.Linear(channels * patch * patch, width)
        self.position = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.time = TimestepEmbedding(width)
        self.label = nn.Embedding(num_classes + 1, width)  # the last index: no label
        self.blocks = nn.ModuleList(DiTBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.out = nn.Linear(width, channels * patch * patch)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        b, (c, h, w), p = x.shape[0], self.latent_shape, self.patch
        tokens = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * p * p)
        x = self.embed(tokens) + self.position
        cond = self.time(t) + self.label(labels)
        for block in self.blocks:
            x = block(x, cond)
        x = self.out(self.norm(x))
        return x.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def flow_matching_loss(model: nn.Module, x0: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    t = torch.rand(x0.shape[0], device=x0.device)
    noise = torch.randn_like(x0)
    xt = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * noise
    return nn.functional.mse_loss(model(xt, t, labels), noise - x0)


def train(store_path, steps: int, batch_size: int, device: str = "cpu", lr: float = 1e-4, log_every: int = 10, seed: int = 0, **model_options):
    """Run ``steps`` optimisation steps; return (model, losses)."""
    torch.manual_seed(seed)
    store = latentstore.open(store_path)
    num_classes = len(store.classes) if store.classes else int(store.labels.max()) + 1
    normalize = store.metadata.stats is not None  # per-channel (x - mean) / std when the store has stats
    loader = LatentLoader(
        store, batch_size, seed=seed, drop_last=True, device=device,
        flip_prob=0.5 if store.has_flip else 0.0, normalize=normalize,
    )
    if len(loader) == 0:
        raise ValueError(f"{store_path} has fewer valid samples than one batch of {batch_size}; lower --batch-size")
    model = TinyDiT(store.latent_shape, num_classes, **model_options).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0)
    losses = []
    while len(losses) < steps:
        for latents, labels in loader:
            labels = torch.where(labels < 0, num_classes, labels).to(device)  # -1 (unknown) -> "no label"
            loss = flow_matching_loss(model, latents.to(device), labels)
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
    args = parser.parse_args(argv)
    train(args.store, args.steps, args.batch_size, args.device, args.lr, args.log_every, width=args.width, depth=args.depth)


if __name__ == "__main__":
    main()
