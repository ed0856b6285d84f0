"""Tiny diffusers pipelines with random weights, built offline for the demo and the tests.

Three families: three Stable Diffusion pipelines (a UNet), one Stable Diffusion XL pipeline (two
text encoders and a size-conditioned UNet) and one PixArt-Sigma pipeline (a transformer).
Nothing here downloads anything: the tokenizers are built in code (a byte-level CLIP vocabulary,
a character-level T5 vocabulary) and every network is made from a small config. Each tiny model
gets its own config and weight seed, so two sides of a battle are two different networks. The
saved directories are loaded by ``generation.pipelines.load_pipeline``, the same function that
loads real checkpoints.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

CLIP_MAX_LENGTH = 77
# PixArt-Sigma pads every prompt to 300 T5 tokens (its ``max_sequence_length``).
T5_MAX_LENGTH = 300
# SentencePiece's word-start marker, which T5 vocabularies use in place of a space.
METASPACE = "\u2581"


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


@dataclass(frozen=True)
class TinyXLConfig:
    """The numbers of the tiny SDXL model: two CLIP text encoders, whose hidden states the UNet
    attends to side by side, and a UNet conditioned on the image size."""

    name: str
    weight_seed: int
    unet_channels: tuple[int, int]
    vae_channels: tuple[int, int]
    text_hidden: tuple[int, int]
    time_embed_dim: int


TINY_SDXL = TinyXLConfig(
    "tiny-sdxl",
    weight_seed=505,
    unet_channels=(8, 16),
    vae_channels=(4, 8),
    text_hidden=(8, 8),
    time_embed_dim=4,
)


@dataclass(frozen=True)
class TinyPixArtConfig:
    """The numbers of the tiny PixArt-Sigma model: a transformer instead of a UNet."""

    name: str
    weight_seed: int
    heads: int
    head_dim: int
    layers: int
    text_hidden: int
    vae_channels: tuple[int, ...]


# PixArt-Sigma bins every requested size to the nearest size its transformer was "trained" at,
# runs there and resizes the image back; ``generate`` keeps that default. The transformer's
# sample size must be 32, 64, 128 or 256 latent pixels, so the tiny one works at its smallest bin,
# 32 latent pixels: a four-block VAE (8x downsampling) makes that 256 image pixels, and patches of
# 2 make 256 tokens. A 64x64 request runs at 256x256 and is resized to 64x64.
TINY_PIXART = TinyPixArtConfig(
    "tiny-pixart",
    weight_seed=404,
    heads=2,
    head_dim=8,
    layers=2,
    text_hidden=16,
    vae_channels=(4, 4, 8, 8),
)
PIXART_SAMPLE_SIZE = 32


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


# The noise schedule of the released Stable Diffusion 1.x and XL checkpoints.
SD_BETAS: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
}


def _clip_text_encoder(hidden: int, cls: type[Any] = CLIPTextModel) -> Any:
    """A two-layer CLIP text encoder over the byte tokenizer's 514 ids."""
    return cls(
        CLIPTextConfig(
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_attention_heads=2,
            num_hidden_layers=2,
            projection_dim=hidden,
            max_position_embeddings=CLIP_MAX_LENGTH,
        )
    )


def _small_unet(
    channels: tuple[int, int], cross_attention_dim: int, **options: Any
) -> UNet2DConditionModel:
    """A two-block UNet on 4 latent channels whose second block attends to the text."""
    return UNet2DConditionModel(
        block_out_channels=channels,
        layers_per_block=1,
        sample_size=16,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        norm_num_groups=2,
        **options,
    )


def _small_vae(channels: tuple[int, ...]) -> AutoencoderKL:
    blocks = len(channels)
    return AutoencoderKL(
        block_out_channels=list(channels),
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * blocks,
        up_block_types=["UpDecoderBlock2D"] * blocks,
        latent_channels=4,
        norm_num_groups=2,
    )


def build_stable_diffusion(config: TinyConfig, directory: Path) -> Path:
    """Build and save one tiny Stable Diffusion pipeline; returns its directory."""
    torch.manual_seed(config.weight_seed)
    tokenizer = write_byte_tokenizer(directory / "_tokenizer_src")
    # Made in this order (text encoder, UNet, VAE) so the seeded weights stay those of earlier
    # builds.
    text_encoder = _clip_text_encoder(config.text_hidden)
    unet = _small_unet(config.unet_channels, config.text_hidden, attention_head_dim=2)
    vae = _small_vae(config.vae_channels)
    scheduler = (
        DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False)
        if config.scheduler == "ddim"
        else EulerDiscreteScheduler(**SD_BETAS)
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
    shutil.rmtree(directory / "_tokenizer_src")
    return directory


def build_stable_diffusion_xl(config: TinyXLConfig, directory: Path) -> Path:
    """Build and save the tiny Stable Diffusion XL pipeline; returns its directory."""
    torch.manual_seed(config.weight_seed)
    tokenizer = write_byte_tokenizer(directory / "_tokenizer_src")
    first, second = config.text_hidden
    unet = _small_unet(
        config.unet_channels,
        first + second,
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1),
        # SDXL's micro-conditioning: six size numbers (original size, crop corner, target size),
        # each embedded, beside the second encoder's pooled text embedding.
        addition_embed_type="text_time",
        addition_time_embed_dim=config.time_embed_dim,
        projection_class_embeddings_input_dim=6 * config.time_embed_dim + second,
    )
    pipe: Any = StableDiffusionXLPipeline(
        vae=_small_vae(config.vae_channels),
        text_encoder=_clip_text_encoder(first),
        text_encoder_2=_clip_text_encoder(second, CLIPTextModelWithProjection),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="leading"),
    )
    pipe.save_pretrained(str(directory))
    shutil.rmtree(directory / "_tokenizer_src")
    return directory


def _t5_pieces() -> list[str]:
    """Single characters, alone and word-initial: printable ASCII and Latin-1.

    Characters outside this set (CJK, emoji) become ``<unk>``, as many do in the real T5
    vocabulary; the tokenizer model T5 uses has no byte fallback.
    """
    chars = [chr(c) for c in range(ord("!"), ord("~") + 1)]
    chars += [chr(c) for c in range(0xA1, 0x100) if c != 0xAD]  # 0xAD: soft hyphen
    return [piece for c in chars for piece in (c, METASPACE + c)]


def t5_tokenizer() -> T5Tokenizer:
    """A T5 (Unigram) tokenizer built in code: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, characters."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), (METASPACE, -2.0)]
    vocab += [(piece, -1.0) for piece in _t5_pieces()]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=T5_MAX_LENGTH)


def build_pixart_sigma(config: TinyPixArtConfig, directory: Path) -> Path:
    """Build and save the tiny PixArt-Sigma pipeline; returns its directory."""
    torch.manual_seed(config.weight_seed)
    tokenizer = t5_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=config.text_hidden,
            d_kv=config.text_hidden // 2,
            d_ff=2 * config.text_hidden,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            feed_forward_proj="gated-gelu",  # T5 v1.1, the encoder PixArt uses
        )
    )
    transformer = PixArtTransformer2DModel(
        sample_size=PIXART_SAMPLE_SIZE,
        num_layers=config.layers,
        patch_size=2,
        attention_head_dim=config.head_dim,
        num_attention_heads=config.heads,
        caption_channels=config.text_hidden,
        cross_attention_dim=config.heads * config.head_dim,
        in_channels=4,
        out_channels=8,  # a learned variance, as in the real model; the pipeline drops it
        attention_bias=True,
        activation_fn="gelu-approximate",
        num_embeds_ada_norm=1000,
        norm_type="ada_norm_single",
        norm_elementwise_affine=False,
        norm_eps=1e-6,
    )
    vae = _small_vae(config.vae_channels)
    # The scheduler settings of the released PixArt-Sigma checkpoints.
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.0001,
        beta_end=0.02,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        prediction_type="epsilon",
        timestep_spacing="linspace",
    )
    pipe: Any = PixArtSigmaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )
    pipe.save_pretrained(str(directory))
    return directory


def build_all(models_dir: Path, *, force: bool = False) -> list[Path]:
    """Build every tiny model that is not on disk yet (all of them with ``force``)."""
    builders: list[tuple[str, Callable[[Path], Path]]] = [
        (config.name, partial(build_stable_diffusion, config)) for config in TINY_MODELS
    ]
    builders.append((TINY_SDXL.name, partial(build_stable_diffusion_xl, TINY_SDXL)))
    builders.append((TINY_PIXART.name, partial(build_pixart_sigma, TINY_PIXART)))
    built = []
    for name, build in builders:
        target = models_dir / name
        if force or not (target / "model_index.json").exists():
            build(target)
            built.append(target)
    return built
