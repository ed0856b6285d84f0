"""Diffusers pipelines: loading, caching per worker process, and running with progress.

This is the one module of the application that imports torch and diffusers (``tiny.py``, the
offline builder of demo models, is the other). Real checkpoints and the tiny demo models go
through the same ``load_pipeline``; only the directory differs.
"""

from __future__ import annotations

import inspect
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class PipelineSpec:
    """What is needed to load one model's pipeline: nothing Django-specific."""

    key: str
    version: str
    source: str
    pipeline_class: str = ""
    revision: str = ""
    dtype: str = "float32"
    scheduler: str = ""


def device_name() -> str:
    """The device this process generates on: CUDA when a GPU is visible, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(spec: PipelineSpec, *, device: str | None = None) -> Any:
    """Load a text-to-image pipeline from a local directory or a pinned hub revision."""
    import diffusers
    import transformers

    # Loading bars are for terminals; in a worker they only flood the log.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()

    device = device or device_name()
    if spec.dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {spec.dtype!r} for model {spec.key}")
    # Half precision only pays on a GPU; CPU kernels for fp16 are slow or missing.
    dtype = _DTYPES[spec.dtype] if device == "cuda" else torch.float32
    cls = diffusers.DiffusionPipeline
    if spec.pipeline_class:
        cls = getattr(diffusers, spec.pipeline_class)
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in {"", "0"} or os.path.isdir(spec.source)
    pipe = cls.from_pretrained(
        spec.source,
        dtype=dtype,
        revision=spec.revision or None,
        local_files_only=offline,
    )
    if spec.scheduler:
        scheduler_cls = getattr(diffusers, spec.scheduler)
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    # SDXL pipelines stamp an invisible watermark when the package is installed: it would mark
    # one side of a battle and not the other.
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if device == "cuda":
        _apply_gpu_options(pipe)
    return pipe


def _apply_gpu_options(pipe: Any) -> None:
    """Memory-layout and decoding options that help on CUDA and are pointless on a CPU."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    if denoiser is not None and getattr(pipe, "unet", None) is not None:
        denoiser.to(memory_format=torch.channels_last)
    vae = getattr(pipe, "vae", None)
    if vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if os.environ.get("ARENA_TORCH_COMPILE", "") == "1" and denoiser is not None:
        # Regional compilation of the repeated blocks compiles far faster than the whole model.
        if hasattr(denoiser, "compile_repeated_blocks"):
            denoiser.compile_repeated_blocks(fullgraph=True)
        else:
            denoiser.compile()


_cache: dict[tuple[str, str], Any] = {}
_cache_lock = threading.Lock()


def get_pipeline(spec: PipelineSpec) -> Any:
    """The pipeline for ``spec``, loaded once per worker process and kept."""
    cache_key = (spec.key, spec.version)
    with _cache_lock:
        pipe = _cache.get(cache_key)
        if pipe is None:
            logger.info("loading pipeline %s@%s from %s", spec.key, spec.version, spec.source)
            pipe = load_pipeline(spec)
            _cache[cache_key] = pipe
        return pipe


def cached_pipeline_keys() -> list[tuple[str, str]]:
    return list(_cache)


_img2img_cache: dict[int, Any] = {}


def image_to_image(pipe: Any) -> Any:
    """The image-to-image pipeline sharing ``pipe``'s loaded components (no second copy)."""
    import diffusers

    from generation.registry import IMAGE_TO_IMAGE

    name = IMAGE_TO_IMAGE.get(type(pipe).__name__)
    if name is None:
        raise ValueError(f"{type(pipe).__name__} has no image-to-image counterpart")
    with _cache_lock:
        derived = _img2img_cache.get(id(pipe))
        if derived is None:
            derived = getattr(diffusers, name)(**pipe.components)
            derived.set_progress_bar_config(disable=True)
            _img2img_cache[id(pipe)] = derived
        return derived


def generate(
    pipe: Any,
    *,
    prompt: str,
    negative_prompt: str,
    seed: int,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    on_step: Callable[[int], None] | None = None,
    init_image: Image.Image | None = None,
    strength: float | None = None,
) -> Image.Image:
    """Run the pipeline once with an explicit seed; ``on_step(n)`` hears each finished step.

    With ``init_image`` it refines that image (image to image) at ``strength``; only
    ``int(steps * strength)`` steps then run, and progress is scaled to ``steps``.
    """
    if init_image is not None:
        if strength is None or not 0.0 < strength <= 1.0:
            raise ValueError("strength must be in (0, 1] to refine an image")
        pipe = image_to_image(pipe)
        ran = max(int(steps * strength), 1)
        inner = on_step
        on_step = None if inner is None else (lambda n: inner(min(round(n * steps / ran), steps)))

    def callback(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if on_step is not None:
            on_step(step + 1)
        return tensors

    # A CPU generator gives the same starting noise on every device.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    kwargs: dict[str, Any] = {
        "prompt": prompt,
        "num_inference_steps": steps,
        "guidance_scale": guidance,
        "width": width,
        "height": height,
        "generator": generator,
        "output_type": "pil",
    }
    accepted = inspect.signature(pipe.__call__).parameters
    if "callback_on_step_end" in accepted:
        kwargs["callback_on_step_end"] = callback
    elif "callback" in accepted:
        # PixArt's pipelines still take the older per-step callback (step, timestep, latents).
        def legacy_callback(step: int, _timestep: Any, _latents: Any) -> None:
            if on_step is not None:
                on_step(step + 1)

        kwargs["callback"] = legacy_callback
        kwargs["callback_steps"] = 1
    if "true_cfg_scale" in accepted:
        # Qwen-Image ignores guidance_scale; its classifier-free guidance is true_cfg_scale,
        # applied only when a negative prompt is given.
        kwargs["true_cfg_scale"] = guidance
        kwargs.setdefault("negative_prompt", " ")
    if "clean_caption" in accepted:
        # Caption cleaning needs bs4 and ftfy and rewrites the prompt; every model gets the
        # prompt as typed.
        kwargs["clean_caption"] = False
    if negative_prompt:
        kwargs["negative_prompt"] = negative_prompt
    if init_image is not None:
        kwargs["image"] = init_image.convert("RGB").resize((width, height))
        kwargs["strength"] = strength
        # Image-to-image pipelines take their size from the image.
        del kwargs["width"], kwargs["height"]
    with torch.inference_mode():
        result = pipe(**kwargs)
    image: Image.Image = result.images[0]
    return image
