"""Tiny diffusers pipelines with random weights, built offline for the demo and the tests.

Every family of deploy/models.example.toml has a twin: three Stable Diffusion pipelines (a UNet),
one Stable Diffusion XL pipeline (two text encoders and a size-conditioned UNet), one
PixArt-Sigma pipeline (a transformer), and one each of SD3, FLUX.1 [dev] (guidance-distilled),
FLUX.1 [schnell] (no guidance), Sana and Qwen-Image. The demo registry uses the first five.
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
    AutoencoderDC,
    AutoencoderKL,
    AutoencoderKLQwenImage,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SanaPipeline,
    SanaTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Gemma2Config,
    Gemma2Model,
    GemmaTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
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


# --- Flow-matching transformers: FLUX, SD3, Sana, Qwen-Image ------------------------------------
#
# Each is as small as its architecture allows and keeps the released model's recipe: the same
# pipeline class, text encoder family, scheduler class and latent packing. Their VAEs downsample
# 8x (FLUX, SD3), 32x (Sana's DC-AE) or 4x (Qwen-Image), so a 64x64 image is a few dozen tokens.


@dataclass(frozen=True)
class TinyFluxConfig:
    """A tiny FLUX.1: CLIP for the pooled embedding, T5 for the sequence, an MMDiT.

    ``guidance_embeds`` is what tells FLUX.1 [dev] (guidance-distilled: the guidance scale is an
    input of the transformer) from [schnell] (timestep-distilled: no guidance at all).
    """

    name: str
    weight_seed: int
    guidance_embeds: bool


# Both FLUX twins share their text encoders byte for byte, as FLUX.1 [dev] and [schnell] do:
# the worker loads them once (generation.pipelines shares identical components).
FLUX_TEXT_SEED = 606
TINY_FLUX_DEV = TinyFluxConfig("tiny-flux-dev", weight_seed=611, guidance_embeds=True)
TINY_FLUX_SCHNELL = TinyFluxConfig("tiny-flux-schnell", weight_seed=622, guidance_embeds=False)
TINY_SD3 = "tiny-sd3"
TINY_SANA = "tiny-sana"
TINY_QWEN_IMAGE = "tiny-qwen-image"
SD3_SEED = 707
SANA_SEED = 808
QWEN_IMAGE_SEED = 909
# Sana bins every request to its transformer's training sizes; a sample size of 16 latent pixels
# means its 512 px table, so a 64x64 request runs at 512x512 (16x16 latents through a 32x DC-AE)
# and is resized back, as the real 1024 px model runs at its own bins.
SANA_SAMPLE_SIZE = 16


def _t5_encoder(tokenizer: Any, hidden: int) -> T5EncoderModel:
    return T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer),
            d_model=hidden,
            d_kv=hidden // 2,
            d_ff=2 * hidden,
            num_layers=2,
            num_heads=2,
            relative_attention_num_buckets=8,
            pad_token_id=0,
            eos_token_id=1,
            feed_forward_proj="gated-gelu",
        )
    )


def _flow_vae(latent_channels: int) -> AutoencoderKL:
    """An 8x-downsampling VAE without quant convs, scaled and shifted like FLUX's and SD3's."""
    return AutoencoderKL(
        block_out_channels=[4, 4, 8, 8],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=latent_channels,
        norm_num_groups=2,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=1.5,
        shift_factor=0.06,
    )


def build_flux(config: TinyFluxConfig, directory: Path) -> Path:
    """Build and save a tiny FLUX.1 pipeline; returns its directory."""
    torch.manual_seed(FLUX_TEXT_SEED)
    clip_tokenizer = write_byte_tokenizer(directory / "_tokenizer_src")
    t5 = t5_tokenizer()
    clip = _clip_text_encoder(16)
    t5_encoder = _t5_encoder(t5, 32)
    torch.manual_seed(config.weight_seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,  # 4 latent channels packed 2x2
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        guidance_embeds=config.guidance_embeds,
        axes_dims_rope=(4, 4, 8),
    )
    pipe: Any = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=_flow_vae(4),
        text_encoder=clip,
        tokenizer=clip_tokenizer,
        text_encoder_2=t5_encoder,
        tokenizer_2=t5,
        transformer=transformer,
    )
    pipe.save_pretrained(str(directory))
    shutil.rmtree(directory / "_tokenizer_src")
    return directory


def build_sd3(directory: Path) -> Path:
    """Build and save a tiny Stable Diffusion 3 pipeline: two CLIP encoders and T5, an MMDiT."""
    torch.manual_seed(SD3_SEED)
    clip_tokenizer = write_byte_tokenizer(directory / "_tokenizer_src")
    t5 = t5_tokenizer()
    pipe: Any = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(
            sample_size=8,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=32,
            caption_projection_dim=16,
            pooled_projection_dim=16,
            pos_embed_max_size=16,
        ),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_flow_vae(4),
        text_encoder=_clip_text_encoder(8, CLIPTextModelWithProjection),
        tokenizer=clip_tokenizer,
        text_encoder_2=_clip_text_encoder(8, CLIPTextModelWithProjection),
        tokenizer_2=clip_tokenizer,
        text_encoder_3=_t5_encoder(t5, 32),
        tokenizer_3=t5,
    )
    pipe.save_pretrained(str(directory))
    shutil.rmtree(directory / "_tokenizer_src")
    return directory


def gemma_tokenizer() -> GemmaTokenizer:
    """A Gemma tokenizer built in code: special tokens, the 256 byte-fallback tokens, ASCII."""
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece in [METASPACE, *(chr(c) for c in range(ord("!"), ord("~") + 1))]:
        vocab[piece] = len(vocab)
    # Room for Sana's prompt-enhancing instruction, which goes in front of the prompt.
    return GemmaTokenizer(vocab=vocab, merges=[], model_max_length=4096)


def build_sana(directory: Path) -> Path:
    """Build and save a tiny Sana pipeline: Gemma-2 text encoder, linear-attention DiT, DC-AE."""
    torch.manual_seed(SANA_SEED)
    tokenizer = gemma_tokenizer()
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        )
    )
    transformer = SanaTransformer2DModel(
        sample_size=SANA_SAMPLE_SIZE,
        patch_size=1,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=8,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=16,
    )
    blocks = 6  # 2**(blocks - 1) = 32x, the compression of Sana's DC-AE
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=2,
        encoder_block_types=("ResBlock",) * blocks,
        decoder_block_types=("ResBlock",) * blocks,
        encoder_block_out_channels=(4,) * blocks,
        decoder_block_out_channels=(4,) * blocks,
        encoder_qkv_multiscales=((),) * blocks,
        decoder_qkv_multiscales=((),) * blocks,
        encoder_layers_per_block=(1,) * blocks,
        decoder_layers_per_block=(1,) * blocks,
        downsample_block_type="conv",
        upsample_block_type="interpolate",
        decoder_norm_types="rms_norm",
        decoder_act_fns="silu",
        scaling_factor=0.41407,
    )
    pipe: Any = SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
    )
    pipe.save_pretrained(str(directory))
    return directory


# Qwen-Image's prompt template wraps the prompt in chat markers; they must stay single tokens.
QWEN_SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A byte-level Qwen2 tokenizer built in code: the 256 byte symbols and the chat markers."""
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    for token in QWEN_SPECIAL_TOKENS:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=1024)
    tokenizer.add_special_tokens({"additional_special_tokens": list(QWEN_SPECIAL_TOKENS[1:])})
    return tokenizer


def build_qwen_image(directory: Path) -> Path:
    """Build and save a tiny Qwen-Image pipeline: Qwen2.5-VL text encoder, MMDiT, Qwen VAE."""
    torch.manual_seed(QWEN_IMAGE_SEED)
    tokenizer = qwen_tokenizer()
    vocab = len(tokenizer)
    text_encoder = Qwen2_5_VLForConditionalGeneration(
        Qwen2_5_VLConfig(
            text_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 2,
                "vocab_size": vocab,
                "bos_token_id": vocab - len(QWEN_SPECIAL_TOKENS),  # <|endoftext|>
                "eos_token_id": vocab - 1,  # <|im_end|>
                # Multimodal rotary sections over the head's 4 frequency pairs (t, h, w).
                "rope_scaling": {
                    "mrope_section": [1, 1, 2],
                    "rope_type": "default",
                    "type": "default",
                },
                "rope_theta": 1000000.0,
            },
            vision_config={
                "depth": 1,
                "hidden_size": 16,
                "intermediate_size": 16,
                "num_heads": 2,
                "out_hidden_size": 16,
            },
            # No images go through the text encoder; these ids only need to exist.
            vision_start_token_id=vocab - 3,
            vision_end_token_id=vocab - 2,
            image_token_id=vocab - 1,
            video_token_id=vocab - 1,
        )
    ).eval()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,  # 4 latent channels packed 2x2
        out_channels=4,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=16,
        guidance_embeds=False,
        axes_dims_rope=(8, 4, 4),
    )
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        temperal_downsample=[False, True],
        latents_mean=[0.0] * 4,
        latents_std=[1.0] * 4,
    )
    pipe: Any = QwenImagePipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=1.0),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
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
    builders.append((TINY_FLUX_DEV.name, partial(build_flux, TINY_FLUX_DEV)))
    builders.append((TINY_FLUX_SCHNELL.name, partial(build_flux, TINY_FLUX_SCHNELL)))
    builders.append((TINY_SD3, build_sd3))
    builders.append((TINY_SANA, build_sana))
    builders.append((TINY_QWEN_IMAGE, build_qwen_image))
    built = []
    for name, build in builders:
        target = models_dir / name
        if force or not (target / "model_index.json").exists():
            build(target)
            built.append(target)
    return built


# Every tiny model and its diffusers pipeline class, for registries and tests.
TINY_PIPELINE_CLASSES = {
    **{config.name: "StableDiffusionPipeline" for config in TINY_MODELS},
    TINY_SDXL.name: "StableDiffusionXLPipeline",
    TINY_PIXART.name: "PixArtSigmaPipeline",
    TINY_FLUX_DEV.name: "FluxPipeline",
    TINY_FLUX_SCHNELL.name: "FluxPipeline",
    TINY_SD3: "StableDiffusion3Pipeline",
    TINY_SANA: "SanaPipeline",
    TINY_QWEN_IMAGE: "QwenImagePipeline",
}
