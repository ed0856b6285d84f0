"""Diffusers pipelines: loading, caching per worker process, memory, and running each family by
its own recipe.

This is the one module of the application that imports torch and diffusers (``tiny.py``, the
offline builder of demo models, is the other). Real checkpoints and the tiny demo models go
through the same ``load_pipeline``; only the directory differs.

- **Recipes.** Each family's call arguments are written out in one small function
  (``FAMILY_RECIPES``), chosen by the pipeline's class (or the nearest diffusers class it
  derives from), never guessed from a signature.
- **Memory.** A worker may hold several models on one GPU. Components whose files are identical
  (the same text encoder in two checkpoints) are loaded once. With a budget
  (``ARENA_GPU_MEMORY_GB``), models that do not fit wait in CPU memory and are swapped in, the
  least recently used ones out.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
import platform
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
GIB = 1024**3
# Component folders that hold no weights: never worth sharing, and schedulers keep state.
_STATELESS_PREFIXES = (
    "tokenizer",
    "scheduler",
    "feature_extractor",
    "image_processor",
    "processor",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


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
    # Decode in tiles: saves memory at very large sizes, but changes some families' images.
    vae_tiling: bool = False
    # "package.module:ClassName" of an in-house DiffusionPipeline subclass, imported (opt-in).
    custom_pipeline: str = ""


def device_name() -> str:
    """The device this process generates on: CUDA when a GPU is visible, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.cache
def hardware_name() -> str:
    """The device this process generates on, by name: the GPU's, else the CPU's model."""
    if device_name() == "cuda":
        return str(torch.cuda.get_device_name())[:200]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()[:200]
    except OSError:
        pass
    return (platform.processor() or platform.machine() or "CPU")[:200]


# --- Classes: what sync_models checks, without loading weights ----------------------------------


def has_pipeline_class(name: str) -> bool:
    """Whether the installed diffusers has a pipeline (or scheduler) class of this name."""
    import diffusers

    return isinstance(getattr(diffusers, name, None), type)


def import_custom_pipeline(path: str) -> type[Any]:
    """The class named by ``"package.module:ClassName"``; it must derive from DiffusionPipeline.

    Only code already installed in the worker's environment is imported: nothing is fetched from
    the Hub or run from a checkpoint directory.
    """
    import diffusers

    module_name, colon, class_name = path.partition(":")
    if not colon or not module_name or not class_name:
        raise ValueError(f"custom pipeline {path!r} must look like 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"custom pipeline {path!r}: cannot import {module_name}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, diffusers.DiffusionPipeline):
        raise ValueError(f"custom pipeline {path!r} is not a diffusers.DiffusionPipeline subclass")
    return cls


def can_refine(class_name: str) -> bool:
    """Whether diffusers maps this text-to-image pipeline class to an image-to-image one."""
    from diffusers.pipelines.auto_pipeline import (
        AUTO_IMAGE2IMAGE_PIPELINES_MAPPING,
        _get_task_class,
    )

    return bool(
        class_name
        and _get_task_class(
            AUTO_IMAGE2IMAGE_PIPELINES_MAPPING, class_name, throw_error_if_not_exist=False
        )
    )


# --- Loading -------------------------------------------------------------------------------------


def load_pipeline(
    spec: PipelineSpec,
    *,
    device: str | None = None,
    stay_on_cpu: bool = False,
    shared: dict[str, list[LoadedComponent]] | None = None,
) -> Any:
    """Load a text-to-image pipeline from a local directory or a pinned hub revision.

    With ``shared`` (the process cache's table of loaded components), a component whose files
    are identical to an already loaded one's (same files, class and dtype) is reused rather than
    loaded again, and new ones are added. ``stay_on_cpu`` prepares the pipeline for ``device``
    (dtype, options) but leaves the weights in CPU memory, for the memory budget to move.
    """
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
    cls: Any = diffusers.DiffusionPipeline
    if spec.custom_pipeline:
        cls = import_custom_pipeline(spec.custom_pipeline)
    elif spec.pipeline_class:
        cls = getattr(diffusers, spec.pipeline_class)
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in {"", "0"} or os.path.isdir(spec.source)
    keys = _component_keys(spec, dtype) if shared is not None else {}
    with _shared_lock:
        reused = _reusable(shared, keys) if shared else {}
    pipe = cls.from_pretrained(
        spec.source,
        dtype=dtype,
        revision=spec.revision or None,
        local_files_only=offline,
        **reused,
    )
    with _shared_lock:
        for name, (key, files) in keys.items():
            module = getattr(pipe, name, None)
            if shared is not None and name not in reused and isinstance(module, torch.nn.Module):
                shared.setdefault(key, []).append(LoadedComponent(files=files, module=module))
    if reused:
        logger.info("model %s reuses loaded %s", spec.key, ", ".join(sorted(reused)))
    if spec.scheduler:
        scheduler_cls = getattr(diffusers, spec.scheduler)
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
    # SDXL pipelines stamp an invisible watermark when the package is installed: it would mark
    # one side of a battle and not the other.
    if getattr(pipe, "watermark", None) is not None:
        pipe.watermark = None
    pipe.set_progress_bar_config(disable=True)
    vae = getattr(pipe, "vae", None)
    if spec.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
        vae.enable_tiling()
    if not stay_on_cpu:
        pipe = pipe.to(device)
    if device == "cuda":
        _apply_gpu_options(pipe)
    return pipe


def denoiser_of(pipe: Any) -> Any:
    """The network called at every step: the UNet or the transformer."""
    return getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)


def _apply_gpu_options(pipe: Any) -> None:
    """Memory-layout options that help on CUDA and are pointless on a CPU."""
    if getattr(pipe, "unet", None) is not None:
        pipe.unet.to(memory_format=torch.channels_last)
    if os.environ.get("ARENA_TORCH_COMPILE", "") == "1":
        compile_denoiser(pipe)


def compile_denoiser(pipe: Any) -> str:
    """Mark the denoiser for ``torch.compile``; returns "regional" or "whole".

    Regional compilation (only the repeated blocks, compiled once and reused) is far faster to
    compile; a model that declares no repeated blocks (SD3, PixArt, Sana in diffusers 0.42) is
    compiled whole, because ``compile_repeated_blocks`` raises there. Compilation itself is lazy:
    it happens at the first call.
    """
    denoiser = denoiser_of(pipe)
    if denoiser is None:
        return "none"
    if getattr(denoiser, "_repeated_blocks", None):
        denoiser.compile_repeated_blocks(fullgraph=True)
        return "regional"
    denoiser.compile()
    return "whole"


# --- Identical components, loaded once -----------------------------------------------------------


@dataclass
class LoadedComponent:
    """A loaded module and the files it came from; their content hash is computed only when
    another component's cheap key (class, dtype, configs, file names and sizes) matches."""

    files: list[Path]
    module: Any
    content: str | None = None


# Cheap key -> components loaded under it, in this process.
_shared: dict[str, list[LoadedComponent]] = {}
_shared_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}


def _checkpoint_dir(spec: PipelineSpec) -> Path | None:
    """The checkpoint's directory on this machine, or None (then nothing is shared)."""
    if os.path.isdir(spec.source):
        return Path(spec.source)
    try:
        from huggingface_hub import snapshot_download

        # Only a lookup in the local cache: loading downloads, if it may, right after.
        return Path(
            snapshot_download(spec.source, revision=spec.revision or None, local_files_only=True)
        )
    except Exception:
        return None


def _file_hash(path: Path) -> str:
    """The content hash of one weight file; hub cache blobs are named by theirs already."""
    real = path.resolve()
    if real.parent.name == "blobs" and len(real.name) == 64:
        return real.name
    stat = real.stat()
    key = (str(real), stat.st_size, stat.st_mtime_ns)
    if key not in _file_hashes:
        digest = hashlib.sha256()
        with real.open("rb") as handle:
            while chunk := handle.read(8 * 1024 * 1024):
                digest.update(chunk)
        _file_hashes[key] = digest.hexdigest()
    return _file_hashes[key]


def _content_hash(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(_file_hash(path).encode())
    return digest.hexdigest()


def _component_keys(spec: PipelineSpec, dtype: torch.dtype) -> dict[str, tuple[str, list[Path]]]:
    """For each weighted component folder: a cheap key and its files.

    Components with different keys differ for sure; equal keys are confirmed by content hashes
    before anything is shared, so a large local checkpoint is hashed only when it could match.
    """
    directory = _checkpoint_dir(spec)
    if directory is None or not (directory / "model_index.json").is_file():
        return {}
    index = json.loads((directory / "model_index.json").read_text(encoding="utf-8"))
    keys: dict[str, tuple[str, list[Path]]] = {}
    for name, value in index.items():
        if name.startswith("_") or name.startswith(_STATELESS_PREFIXES):
            continue
        folder = directory / name
        if not isinstance(value, list) or not folder.is_dir():
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file())
        if not any(p.name.endswith(_WEIGHT_SUFFIXES) for p in files):
            continue
        digest = hashlib.sha256(json.dumps([value, str(dtype)]).encode())
        if name == "vae":
            digest.update(f"tiling={spec.vae_tiling}".encode())  # tiling is set on the module
        for path in files:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
            if path.suffix == ".json":
                digest.update(path.read_bytes())
        keys[name] = (digest.hexdigest(), files)
    return keys


def _reusable(
    shared: dict[str, list[LoadedComponent]], keys: dict[str, tuple[str, list[Path]]]
) -> dict[str, Any]:
    """The already loaded modules whose files are identical to these components'."""
    reused: dict[str, Any] = {}
    for name, (key, files) in keys.items():
        candidates = shared.get(key, [])
        if not candidates:
            continue
        content = _content_hash(files)
        for candidate in candidates:
            if candidate.content is None:
                candidate.content = _content_hash(candidate.files)
            if candidate.content == content:
                reused[name] = candidate.module
                break
    return reused


# --- The per-process cache, within a memory budget ----------------------------------------------


@dataclass
class _Memory:
    """Which cached models are on the device, in least-recently-used order, and swap costs."""

    budget_bytes: int | None = None
    on_device: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    swaps: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    evictions: list[tuple[str, str]] = field(default_factory=list)


_cache: dict[tuple[str, str], Any] = {}
_cache_lock = threading.RLock()
_memory = _Memory()


def memory_budget_from_env() -> int | None:
    """``ARENA_GPU_MEMORY_GB`` in bytes: None (no budget) when unset, empty or 0."""
    raw = os.environ.get("ARENA_GPU_MEMORY_GB", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"ARENA_GPU_MEMORY_GB must be a number of GiB, got {raw!r}") from None
    if value < 0 or value != value:
        raise ValueError(f"ARENA_GPU_MEMORY_GB must be >= 0, got {raw!r}")
    return int(value * GIB) or None


def set_memory_budget(budget_bytes: int | None) -> None:
    """Set the device memory the cached models' weights may take (None: no limit); models over
    a lowered budget move out to CPU memory at once, least recently used first."""
    with _cache_lock:
        _memory.budget_bytes = budget_bytes
        while budget_bytes is not None and _memory.on_device and resident_bytes() > budget_bytes:
            _evict_least_recent(keep={}, making_room_for="a lower budget")


_memory.budget_bytes = memory_budget_from_env()


def _modules(pipe: Any) -> dict[int, torch.nn.Module]:
    return {
        id(module): module
        for module in pipe.components.values()
        if isinstance(module, torch.nn.Module)
    }


_module_bytes: dict[int, int] = {}


def _weight_bytes(modules: Iterable[torch.nn.Module]) -> int:
    """Bytes of these modules' parameters and buffers; each module is measured once (a move
    between devices keeps its size)."""
    total = 0
    for module in modules:
        size = _module_bytes.get(id(module))
        if size is None:
            size = sum(
                tensor.numel() * tensor.element_size()
                for tensor in (*module.parameters(), *module.buffers())
            )
            _module_bytes[id(module)] = size
        total += size
    return total


def _resident_modules(exclude: tuple[str, str] | None = None) -> dict[int, torch.nn.Module]:
    resident: dict[int, torch.nn.Module] = {}
    for key in _memory.on_device:
        if key != exclude:
            resident.update(_modules(_cache[key]))
    return resident


def model_weight_bytes(pipe: Any) -> int:
    """Bytes of one pipeline's weights (parameters and buffers of its modules)."""
    return _weight_bytes(_modules(pipe).values())


def resident_bytes() -> int:
    """Bytes of weights on the device now, each shared component counted once."""
    with _cache_lock:
        return _weight_bytes(_resident_modules().values())


def _make_resident(key: tuple[str, str], device: str) -> None:
    """Put this model's weights on the device, first moving least recently used ones to CPU."""
    if key in _memory.on_device:
        _memory.on_device.move_to_end(key)
        return
    started = time.perf_counter()
    wanted = _modules(_cache[key])
    budget = _memory.budget_bytes
    if budget is not None:
        own = _weight_bytes(wanted.values())
        if own > budget:
            raise ValueError(
                f"model {key[0]} needs {own / GIB:.2f} GiB of weights; "
                f"ARENA_GPU_MEMORY_GB allows {budget / GIB:.2f}"
            )
        while _memory.on_device:
            resident = _resident_modules()
            missing = [m for i, m in wanted.items() if i not in resident]
            if _weight_bytes(resident.values()) + _weight_bytes(missing) <= budget:
                break
            _evict_least_recent(keep=wanted, making_room_for=key[0])
    for module in wanted.values():
        module.to(device)
    _memory.on_device[key] = None
    _memory.swaps.setdefault(key, []).append(time.perf_counter() - started)


def _evict_least_recent(*, keep: dict[int, torch.nn.Module], making_room_for: str) -> None:
    """Move the least recently used model's weights to CPU memory, except components that a
    model still on the device (or ``keep``) uses."""
    victim, _ = _memory.on_device.popitem(last=False)
    still_used = _resident_modules()
    for module_id, module in _modules(_cache[victim]).items():
        if module_id not in still_used and module_id not in keep:
            module.to("cpu")
    _memory.evictions.append(victim)
    logger.info("moved %s@%s to CPU memory to make room for %s", *victim, making_room_for)


def get_pipeline(spec: PipelineSpec) -> Any:
    """The pipeline for ``spec``, loaded once per worker process and kept, on the device.

    Under a memory budget a model not on the device is swapped in, least recently used ones out.
    """
    cache_key = (spec.key, spec.version)
    device = device_name()
    with _cache_lock:
        pipe = _cache.get(cache_key)
        if pipe is None:
            logger.info("loading pipeline %s@%s from %s", spec.key, spec.version, spec.source)
            # Under a budget, load into CPU memory and let _make_resident decide what moves.
            pipe = load_pipeline(
                spec, device=device, stay_on_cpu=_memory.budget_bytes is not None, shared=_shared
            )
            _cache[cache_key] = pipe
        _make_resident(cache_key, device)
        return pipe


def cached_pipeline_keys() -> list[tuple[str, str]]:
    return list(_cache)


def on_device_keys() -> list[tuple[str, str]]:
    """Cached models whose weights are on the device, least recently used first."""
    with _cache_lock:
        return list(_memory.on_device)


def swap_seconds() -> dict[tuple[str, str], list[float]]:
    """Every swap-in's duration per model (the first is the move after loading)."""
    with _cache_lock:
        return {key: list(times) for key, times in _memory.swaps.items()}


def evictions() -> list[tuple[str, str]]:
    """The models moved out to CPU memory, in order."""
    with _cache_lock:
        return list(_memory.evictions)


def clear_cache() -> None:
    """Forget every cached pipeline and shared component (tests and benchmarks)."""
    with _cache_lock, _shared_lock:
        _cache.clear()
        _img2img_cache.clear()
        _shared.clear()
        _module_bytes.clear()
        _memory.on_device.clear()
        _memory.swaps.clear()
        _memory.evictions.clear()


_img2img_cache: dict[int, Any] = {}


def image_to_image(pipe: Any) -> Any:
    """The image-to-image pipeline sharing ``pipe``'s loaded components (no second copy)."""
    from diffusers import AutoPipelineForImage2Image

    if not can_refine(type(pipe).__name__):
        raise ValueError(f"{type(pipe).__name__} has no image-to-image counterpart")
    with _cache_lock:
        derived = _img2img_cache.get(id(pipe))
        if derived is None:
            derived = AutoPipelineForImage2Image.from_pipe(pipe)
            derived.set_progress_bar_config(disable=True)
            _img2img_cache[id(pipe)] = derived
        return derived


# --- Each family's recipe ------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the arena asks of a model, before any family's conventions."""

    negative_prompt: str
    guidance: float


Recipe = Callable[[Request], dict[str, Any]]


def _classic_cfg(request: Request) -> dict[str, Any]:
    """Stable Diffusion, SDXL, SD3: classifier-free guidance at ``guidance_scale`` (when above
    1), the negative prompt as the unconditional side."""
    kwargs: dict[str, Any] = {"guidance_scale": request.guidance}
    if request.negative_prompt:
        kwargs["negative_prompt"] = request.negative_prompt
    return kwargs


def _flux(request: Request) -> dict[str, Any]:
    """FLUX.1: guidance-distilled [dev] takes the scale as an embedding, one transformer call per
    step; [schnell] has no guidance input and ignores it. Never true CFG (``true_cfg_scale``
    stays 1): it would double the cost and leave the recipe. Negative prompts have no effect."""
    return {"guidance_scale": request.guidance, "true_cfg_scale": 1.0}


def _pixart(request: Request) -> dict[str, Any]:
    """PixArt-Sigma: CFG at ``guidance_scale``; caption cleaning (bs4, ftfy) off so every model
    gets the prompt as typed."""
    return {
        "guidance_scale": request.guidance,
        "negative_prompt": request.negative_prompt,
        "clean_caption": False,
    }


def _sana(request: Request) -> dict[str, Any]:
    """Sana: CFG at ``guidance_scale``, its default prompt-enhancing instruction for Gemma kept,
    caption cleaning off."""
    return {
        "guidance_scale": request.guidance,
        "negative_prompt": request.negative_prompt,
        "clean_caption": False,
    }


def _qwen_image(request: Request) -> dict[str, Any]:
    """Qwen-Image is not guidance-distilled: ``guidance_scale`` is ignored and classifier-free
    guidance is ``true_cfg_scale``, applied only with a negative prompt (" " when none)."""
    return {
        "true_cfg_scale": request.guidance,
        "negative_prompt": request.negative_prompt or " ",
    }


def _generic(request: Request) -> dict[str, Any]:
    """A custom pipeline that derives from no known family: the common text-to-image call."""
    return _classic_cfg(request)


# Keyed by the diffusers text-to-image class; image-to-image twins follow their source's recipe.
FAMILY_RECIPES: dict[str, Recipe] = {
    "StableDiffusionPipeline": _classic_cfg,
    "StableDiffusionXLPipeline": _classic_cfg,
    "StableDiffusion3Pipeline": _classic_cfg,
    "FluxPipeline": _flux,
    "PixArtSigmaPipeline": _pixart,
    "SanaPipeline": _sana,
    "QwenImagePipeline": _qwen_image,
}
# PixArt's pipelines still take the older per-step callback (step, timestep, latents).
_LEGACY_CALLBACK = {"PixArtSigmaPipeline"}
# Image-to-image twins that take the size as arguments; SD's and SDXL's take it from the image.
# Without it, these would work at their default size (1024 px) whatever the source's.
_IMAGE_TO_IMAGE_TAKES_SIZE = {"StableDiffusion3Pipeline", "FluxPipeline", "QwenImagePipeline"}


def family_of(pipe: Any) -> str:
    """The known diffusers family ``pipe``'s class is or derives from; "" for none."""
    for cls in type(pipe).__mro__:
        if cls.__name__ in FAMILY_RECIPES:
            return cls.__name__
    return ""


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
    (image,) = generate_batch(
        pipe,
        prompts=[prompt],
        seeds=[seed],
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        on_step=on_step,
        init_image=init_image,
        strength=strength,
    )
    return image


def generate_batch(
    pipe: Any,
    *,
    prompts: list[str],
    seeds: list[int],
    negative_prompt: str,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    on_step: Callable[[int], None] | None = None,
    init_image: Image.Image | None = None,
    strength: float | None = None,
) -> list[Image.Image]:
    """Several prompts in one run, each with its own seeded generator (see ``generate``)."""
    runner, kwargs = call_arguments(
        pipe,
        prompts=prompts,
        seeds=seeds,
        negative_prompt=negative_prompt,
        steps=steps,
        guidance=guidance,
        width=width,
        height=height,
        on_step=on_step,
        init_image=init_image,
        strength=strength,
    )
    with torch.inference_mode():
        result = runner(**kwargs)
    images: list[Image.Image] = list(result.images)
    return images


def call_arguments(
    pipe: Any,
    *,
    prompts: list[str],
    seeds: list[int],
    negative_prompt: str,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    on_step: Callable[[int], None] | None = None,
    init_image: Image.Image | None = None,
    strength: float | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The pipeline to call (the image-to-image twin when refining) and every argument, by name,
    as the model's family expects them."""
    if len(prompts) != len(seeds) or not prompts:
        raise ValueError("give one seed per prompt, at least one prompt")
    family = family_of(pipe)
    recipe = FAMILY_RECIPES.get(family, _generic)
    if init_image is not None:
        if strength is None or not 0.0 < strength <= 1.0:
            raise ValueError("strength must be in (0, 1] to refine an image")
        pipe = image_to_image(pipe)
        ran = max(int(steps * strength), 1)
        inner = on_step
        on_step = None if inner is None else (lambda n: inner(min(round(n * steps / ran), steps)))

    # A CPU generator gives the same starting noise on every device.
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    kwargs: dict[str, Any] = {
        "prompt": prompts[0] if len(prompts) == 1 else prompts,
        "num_inference_steps": steps,
        "generator": generators[0] if len(generators) == 1 else generators,
        "output_type": "pil",
        **recipe(Request(negative_prompt=negative_prompt, guidance=guidance)),
    }
    if on_step is not None:
        report = on_step
        if family in _LEGACY_CALLBACK and init_image is None:

            def legacy_callback(step: int, _timestep: Any, _latents: Any) -> None:
                report(step + 1)

            kwargs["callback"] = legacy_callback
            kwargs["callback_steps"] = 1
        else:

            def callback(_pipe: Any, step: int, _t: Any, tensors: dict[str, Any]) -> dict[str, Any]:
                report(step + 1)
                return tensors

            kwargs["callback_on_step_end"] = callback
    if init_image is not None:
        kwargs["image"] = init_image.convert("RGB").resize((width, height))
        kwargs["strength"] = strength
    if init_image is None or family in _IMAGE_TO_IMAGE_TAKES_SIZE:
        kwargs["width"] = width
        kwargs["height"] = height
    return pipe, kwargs
