"""Tiny diffusers pipelines with random weights, built offline for the demo and the tests.

Nothing here downloads anything: the tokenizer is a byte-level CLIP vocabulary written to disk
and every network is made from a small config. Each tiny model gets its own config and weight
seed, so two sides of a battle are two different networks. The saved directories are loaded by
``generation.pipelines.load_pipeline``, the same function that loads real checkpoints.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

CLIP_MAX_LENGTH = 77


@dataclass(frozen=True)
class TinyConfig:
    """The few numbers that make one tiny model differ from another."""

    name: str
    weight_seed: int
    unet_channels: tuple[int, int]
    vae_channels: tuple[int, int]
    text_hidden: int
    scheduler: str  # "ddim" or "euler"


TINY_MODELS: tuple[TinyConfig, ...] = (
    TinyConfig(
        "tiny-inhouse",
        weight_seed=101,
        unet_channels=(8, 16),
        vae_channels=(8, 16),
        text_hidden=16,
        scheduler="euler",
    ),
    TinyConfig(
        "tiny-baseline-a",
        weight_seed=202,
        unet_channels=(4, 8),
        vae_channels=(4, 8),
        text_hidden=8,
        scheduler="ddim",
    ),
    TinyConfig(
        "tiny-baseline-b",
        weight_seed=303,
        unet_channels=(8, 8),
        vae_channels=(4, 8),
        text_hidden=8,
        scheduler="euler",
    ),
)


def _byte_symbols() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def write_byte_tokenizer(directory: Path) -> CLIPTokenizer:
    """A CLIP tokenizer whose vocabulary is just bytes: 514 ids, no merges, no download."""
    directory.mkdir(parents=True, exist_ok=True)
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": CLIP_MAX_LENGTH,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        ),
        encoding="utf-8",
    )
    return CLIPTokenizer.from_pretrained(str(directory))


def build_stable_diffusion(config: TinyConfig, directory: Path) -> Path:
    """Build and save one tiny Stable Diffusion pipeline; returns its directory."""
    torch.manual_seed(config.weight_seed)
    tokenizer = write_byte_tokenizer(directory / "_tokenizer_src")
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=config.text_hidden,
            intermediate_size=2 * config.text_hidden,
            num_attention_heads=2,
            num_hidden_layers=2,
            projection_dim=config.text_hidden,
            max_position_embeddings=CLIP_MAX_LENGTH,
        )
    )
    unet = UNet2DConditionModel(
        block_out_channels=config.unet_channels,
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=config.text_hidden,
        norm_num_groups=2,
        attention_head_dim=2,
    )
    vae = AutoencoderKL(
        block_out_channels=list(config.vae_channels),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
        norm_num_groups=2,
    )
    common = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
    }
    scheduler = (
        DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=False)
        if config.scheduler == "ddim"
        else EulerDiscreteScheduler(**common)
    )
    pipe: Any = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(directory))
    for leftover in (directory / "_tokenizer_src").iterdir():
        leftover.unlink()
    (directory / "_tokenizer_src").rmdir()
    return directory


def build_all(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Build every tiny model that is not on disk yet (all of them with ``force``)."""
    built = []
    for config in TINY_MODELS:
        target = models_dir / config.name
        if force or not (target / "model_index.json").exists():
            build_stable_diffusion(config, target)
            built.append(target)
    return built
