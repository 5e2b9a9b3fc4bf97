"""Autoencoder backends: load a diffusers autoencoder and turn pixels into latents.

:func:`load_backend` loads ``AutoencoderDC`` (DC-AE, e.g. SANA's) or
``AutoencoderKL`` from a Hugging Face hub id or a local ``save_pretrained``
directory and wraps it in a :class:`Backend` that owns the device and dtype
policy: ``encode`` takes uint8 pixels and returns float32 latents, ``decode``
goes back to uint8 pixels. The backend only calls the models' public
``encode``/``decode``.

:func:`build_tiny_model` and :func:`save_tiny_model` make small randomly
initialised models of the same classes for tests and demos; a directory made
by :func:`save_tiny_model` is marked, and a backend loaded from it says
``random_init: True`` in its metadata and repr.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any

import diffusers
import torch

from latentstore.errors import ModelLoadError

__all__ = [
    "DEFAULT_MODEL",
    "Backend",
    "SlowDeviceWarning",
    "build_tiny_model",
    "load_backend",
    "save_tiny_model",
]

DEFAULT_MODEL = "mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"

# Written into the config.json of save_tiny_model's directories.
RANDOM_INIT_KEY = "_latentstore_random_init"

_CLASSES = {"AutoencoderDC": "dc", "AutoencoderKL": "kl"}

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
_DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}

_COMMIT = re.compile(r"[0-9a-f]{40}")

# Tiny models: same classes and layouts as the real ones, a few thousand
# times fewer weights. The DC one keeps DC-AE's 6 levels (spatial
# compression 32) and 32 latent channels, so a 256 px image gives a
# (32, 8, 8) latent like SANA's DC-AE; the KL one is f8 with 4 channels like
# SD's VAE.
_TINY_CONFIGS = {
    "dc": dict(
        latent_channels=32,
        attention_head_dim=8,
        encoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
        decoder_block_types=("ResBlock",) * 3 + ("EfficientViTBlock",) * 3,
        encoder_block_out_channels=(8, 8, 16, 16, 32, 32),
        decoder_block_out_channels=(8, 8, 16, 16, 32, 32),
        encoder_layers_per_block=(0, 1, 1, 1, 1, 1),
        decoder_layers_per_block=(0, 1, 1, 1, 1, 1),
        encoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        decoder_qkv_multiscales=((), (), (), (5,), (5,), (5,)),
        scaling_factor=0.41407,
    ),
    "kl": dict(
        block_out_channels=(8, 16, 16, 16),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=256,
        scaling_factor=0.18215,
    ),
}


class SlowDeviceWarning(UserWarning):
    """No CUDA device was found and the model runs on the CPU."""


class Backend:
    """A loaded autoencoder with its device, dtype and provenance.

    ``encode(pixels)`` maps uint8 NCHW pixels (any device) to unscaled
    float32 latents on the model's device; ``decode(latents)`` maps latents
    back to uint8 NCHW pixels there. ``metadata()`` is what a store records.
    Build it with :func:`load_backend`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        name: str,
        revision: str | None,
        device: torch.device,
        dtype: torch.dtype,
        sample: bool = False,
        seed: int = 0,
        random_init: bool = False,
    ):
        self.model = model
        self.name = name
        self.revision = revision
        self.device = device
        self.dtype = dtype
        self.sample = sample
        self.seed = seed
        self.random_init = random_init
        self.class_name = type(model).__name__
        self.kind = _CLASSES[self.class_name]
        self.config = dict(model.config)
        widths = self.config["encoder_block_out_channels" if self.kind == "dc" else "block_out_channels"]
        self.spatial_compression = 2 ** (len(widths) - 1)
        self.latent_channels = int(self.config["latent_channels"])
        self._generator = torch.Generator(device=device).manual_seed(seed) if sample else None

    def latent_shape(self, resolution: int) -> tuple[int, int, int]:
        """(C, H, W) of the latent of a ``resolution`` x ``resolution`` image."""
        f = self.spatial_compression
        if resolution < f or resolution % f:
            raise ValueError(
                f"resolution {resolution} is not a multiple of the model's spatial "
                f"compression {f}; pick e.g. {max(f, resolution // f * f)}"
            )
        return (self.latent_channels, resolution // f, resolution // f)

    def encode(self, pixels: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Latents (float32, unscaled, on the model's device) of uint8 NCHW RGB ``pixels``.

        Pixels are mapped to [-1, 1] as ``x / 127.5 - 1`` in float32, then
        cast to the model dtype. AutoencoderKL returns the posterior mean,
        or a sample when the backend was loaded with ``sample=True`` (from
        ``generator``, else the backend's own generator seeded with ``seed``).
        """
        if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.uint8:
            raise TypeError(f"expected a uint8 torch tensor, got {_describe(pixels)}")
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"expected pixels of shape (N, 3, H, W), got {tuple(pixels.shape)}")
        for side in pixels.shape[2:]:
            self.latent_shape(side)
        with torch.inference_mode():
            x = pixels.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
            x = x.to(self.dtype)
            if self.kind == "dc":
                z = self.model.encode(x).latent
            else:
                posterior = self.model.encode(x).latent_dist
                z = posterior.sample(generator or self._generator) if self.sample else posterior.mode()
            return z.float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW pixels (on the model's device) of unscaled ``latents``."""
        if not isinstance(latents, torch.Tensor) or not latents.is_floating_point():
            raise TypeError(f"expected a floating-point torch tensor, got {_describe(latents)}")
        if latents.ndim != 4 or latents.shape[1] != self.latent_channels:
            raise ValueError(
                f"expected latents of shape (N, {self.latent_channels}, h, w), "
                f"got {tuple(latents.shape)}"
            )
        with torch.inference_mode():
            x = self.model.decode(latents.to(self.device, self.dtype)).sample
            return x.float().add_(1.0).mul_(127.5).clamp_(0, 255).round_().to(torch.uint8)

    def metadata(self) -> dict[str, Any]:
        """JSON-able provenance of the latents this backend produces."""
        return {
            "backend": f"diffusers.{self.class_name}",
            "model": self.name,
            "revision": self.revision,
            "dtype": _DTYPE_NAMES[self.dtype],
            "scaling_factor": self.config.get("scaling_factor"),
            "shift_factor": self.config.get("shift_factor"),
            "latent_channels": self.latent_channels,
            "spatial_compression": self.spatial_compression,
            "sample": self.sample,
            "seed": self.seed if self.sample else None,
            "random_init": self.random_init,
            "diffusers_version": diffusers.__version__,
        }

    def __repr__(self) -> str:
        revision = f" @ {self.revision[:12]}" if self.revision else ""
        text = (
            f"Backend(diffusers.{self.class_name} {self.name!r}{revision}, "
            f"device={self.device}, dtype={_DTYPE_NAMES[self.dtype]}"
            f"{', sample' if self.sample else ''})"
        )
        if self.random_init:
            text += "  [RANDOM WEIGHTS: a test model, not a trained autoencoder]"
        return text


def _describe(x: Any) -> str:
    return f"{x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    warnings.warn(
        "no CUDA device found, encoding on the CPU is slow (about 2 s per 256 px "
        "image with the full DC-AE); pass device='cpu' to accept that",
        SlowDeviceWarning,
        stacklevel=3,
    )
    return torch.device("cpu")


def _pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in _DTYPE_NAMES:
            raise ValueError(f"dtype {dtype} is not supported; use fp32, fp16 or bf16")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use 'fp32', 'fp16' or 'bf16'")
    return _DTYPES[dtype]


def _looks_local(model: str) -> bool:
    return (
        os.path.isabs(model)
        or model.startswith(("./", "../", "~"))
        or model.count("/") > 1
        or os.sep != "/" and os.sep in model
    )


def _local_config(directory: str) -> dict:
    path = os.path.join(directory, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{directory!r} has no config.json; pass a local directory written by "
            "save_pretrained or 'huggingface-cli download ... --local-dir DIR'"
        ) from None
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot read {path!r}: {e}; re-download the model") from e


def _not_a_model_id(model: str) -> ModelLoadError:
    return ModelLoadError(
        f"{model!r} is neither a local directory nor a valid Hugging Face hub id; "
        "pass a hub id like 'org/name' or an existing local directory"
    )


def _hub_config(model: str, revision: str | None) -> tuple[dict, str | None, bool]:
    """(config, resolved commit or None, whether to stay offline) for a hub id.

    Asks the hub once, without retries, for the commit; when the hub cannot be
    reached (or HF_HUB_OFFLINE is set) it falls back to the local cache.
    """
    import huggingface_hub as hub
    from huggingface_hub import constants, errors

    hint = (
        f"download it elsewhere with 'huggingface-cli download {model} --local-dir DIR' "
        "and pass that local directory as the model (--model DIR)"
    )
    commit = None
    offline = constants.is_offline_mode()
    if not offline:
        try:
            commit = hub.model_info(model, revision=revision, timeout=10).sha
        except errors.HFValidationError as e:
            raise _not_a_model_id(model) from e
        except errors.RepositoryNotFoundError as e:
            raise ModelLoadError(
                f"model {model!r} is not on the Hugging Face hub (or is private: run "
                f"'huggingface-cli login'); check the name, or {hint}"
            ) from e
        except errors.RevisionNotFoundError as e:
            raise ModelLoadError(
                f"model {model!r} has no revision {revision!r}; pass an existing branch, "
                "tag or commit"
            ) from e
        except Exception:  # the hub is unreachable: try the local cache
            offline = True
    try:
        path = hub.hf_hub_download(
            model, "config.json", revision=commit or revision, local_files_only=offline
        )
    except errors.HFValidationError as e:
        raise _not_a_model_id(model) from e
    except errors.LocalEntryNotFoundError as e:
        raise ModelLoadError(
            f"could not load {model!r} from the Hugging Face hub (offline?) and it is not "
            f"in the local cache; {hint}"
        ) from e
    except errors.EntryNotFoundError as e:
        raise ModelLoadError(
            f"{model!r} has no config.json at its top level, so it is not a diffusers "
            "autoencoder repository; pass the autoencoder itself (e.g. a 'vae' folder "
            "downloaded to a local directory)"
        ) from e
    snapshot = Path(path).parent.name
    with open(path) as f:
        config = json.load(f)
    return config, snapshot if _COMMIT.fullmatch(snapshot) else commit, offline


def load_backend(
    model: str = DEFAULT_MODEL,
    *,
    revision: str | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    sample: bool = False,
    seed: int = 0,
) -> Backend:
    """Load an ``AutoencoderDC`` or ``AutoencoderKL`` as a :class:`Backend`.

    ``model`` is a Hugging Face hub id (pinned to ``revision`` when given;
    the resolved commit is recorded) or a local directory written by
    ``save_pretrained``. The class comes from the config's ``_class_name``.
    ``device`` defaults to CUDA when available, else the CPU with a
    :class:`SlowDeviceWarning`; ``dtype`` ('fp32', 'fp16', 'bf16' or a torch
    dtype) defaults to bf16 on CUDA and fp32 elsewhere. ``sample`` draws
    AutoencoderKL latents from the posterior (seeded by ``seed``) instead of
    taking its mean.

    Offline (HF_HUB_OFFLINE=1 or no network) a hub id loads from the local
    cache; anything that cannot be loaded raises
    :class:`~latentstore.errors.ModelLoadError` with a one-line message.
    """
    model = os.fspath(model)
    if os.path.isdir(model):
        name, resolved, offline = os.path.abspath(model), None, True
        config = _local_config(name)
        if revision is not None:
            raise ModelLoadError(
                f"revision {revision!r} was given for the local directory {model!r}; "
                "a local directory has no revisions, drop it"
            )
    elif _looks_local(model) or os.path.exists(model):
        raise ModelLoadError(
            f"local model directory {model!r} does not exist; pass a directory written by "
            "save_pretrained or a Hugging Face hub id"
        )
    else:
        name = model
        config, resolved, offline = _hub_config(model, revision)

    class_name = config.get("_class_name")
    if class_name not in _CLASSES:
        raise ModelLoadError(
            f"{model!r} holds a {class_name!r}, not an autoencoder latentstore supports; "
            f"pass a model of class {' or '.join(_CLASSES)}"
        )
    device = _pick_device(device)
    dtype = _pick_dtype(dtype, device)
    cls = getattr(diffusers, class_name)
    try:
        with warnings.catch_warnings():
            # diffusers 0.42 still passes an argument that huggingface_hub 1.x
            # deprecated; the warning is about diffusers, not about this load.
            warnings.filterwarnings("ignore", "The `local_dir_use_symlinks` argument is deprecated")
            net = cls.from_pretrained(
                name,
                revision=resolved,
                torch_dtype=dtype,
                local_files_only=offline,
                # Without this diffusers logs a plea to install accelerate.
                low_cpu_mem_usage=importlib.util.find_spec("accelerate") is not None,
            )
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelLoadError(
            f"could not load the {class_name} weights of {model!r}: {first_line}; "
            "re-download the model to a local directory and pass that directory"
        ) from e
    net = net.to(device).eval().requires_grad_(False)
    return Backend(
        net,
        name=name,
        revision=resolved,
        device=device,
        dtype=dtype,
        sample=sample,
        seed=seed,
        random_init=bool(config.get(RANDOM_INIT_KEY, False)),
    )


def build_tiny_model(kind: str = "dc", seed: int = 0) -> torch.nn.Module:
    """A tiny, randomly initialised ``AutoencoderDC`` ('dc') or ``AutoencoderKL`` ('kl').

    The DC model has the real DC-AE's spatial compression 32 and 32 latent
    channels; the KL model is f8 with 4 channels. The weights depend only on
    ``seed`` (the global torch RNG is left untouched). For tests and demos:
    its latents mean nothing.
    """
    if kind not in _TINY_CONFIGS:
        raise ValueError(f"unknown tiny model kind {kind!r}; use 'dc' or 'kl'")
    cls = diffusers.AutoencoderDC if kind == "dc" else diffusers.AutoencoderKL
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(**_TINY_CONFIGS[kind]).eval()


def save_tiny_model(directory: str | os.PathLike, kind: str = "dc", seed: int = 0) -> str:
    """Save :func:`build_tiny_model` with ``save_pretrained`` and mark it as random.

    Returns the directory as an absolute path; :func:`load_backend` on it
    reports ``random_init: True``.
    """
    directory = os.path.abspath(os.fspath(directory))
    build_tiny_model(kind, seed).save_pretrained(directory)
    path = os.path.join(directory, "config.json")
    with open(path) as f:
        config = json.load(f)
    config[RANDOM_INIT_KEY] = True
    config["_latentstore_tiny_seed"] = seed
    with open(path, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return directory
