"""The tiny pipelines of every family, loaded through the loader real checkpoints use, each run
by its own recipe; several models in one process within a memory budget."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from generation import pipelines, tiny
from generation.tiny import TINY_MODELS

# Batched and unbatched runs may differ by a pixel level; repeated single runs should not.
PIXEL_TOLERANCE = 1


@pytest.fixture(scope="module")
def loaded(tiny_models_dir: Path) -> dict[str, object]:
    return {
        config.name: pipelines.load_pipeline(
            pipelines.PipelineSpec(
                key=config.name,
                version="1",
                source=str(tiny_models_dir / config.name),
                pipeline_class="StableDiffusionPipeline",
            ),
            device="cpu",
        )
        for config in TINY_MODELS
    }


def run(pipe: object, seed: int, steps: int = 4, on_step: object = None) -> np.ndarray:
    image = pipelines.generate(
        pipe,
        prompt="a red fox",
        negative_prompt="",
        seed=seed,
        steps=steps,
        guidance=5.0,
        width=64,
        height=64,
        on_step=on_step,  # type: ignore[arg-type]
    )
    return np.asarray(image, dtype=np.int16)


def test_the_same_seed_gives_the_same_image(loaded: dict[str, object]) -> None:
    pipe = loaded["tiny-inhouse"]
    assert np.abs(run(pipe, 7) - run(pipe, 7)).max() <= PIXEL_TOLERANCE


def test_another_seed_gives_another_image(loaded: dict[str, object]) -> None:
    pipe = loaded["tiny-inhouse"]
    assert np.abs(run(pipe, 7) - run(pipe, 8)).mean() > 5


def test_each_tiny_model_makes_its_own_image(loaded: dict[str, object]) -> None:
    outputs = [run(pipe, 7) for pipe in loaded.values()]
    for i in range(len(outputs)):
        for j in range(i + 1, len(outputs)):
            assert np.abs(outputs[i] - outputs[j]).mean() > 5


def test_every_step_is_reported_in_order(loaded: dict[str, object]) -> None:
    steps: list[int] = []
    run(loaded["tiny-baseline-a"], 1, steps=6, on_step=steps.append)
    assert steps == [1, 2, 3, 4, 5, 6]


def test_the_pipeline_is_loaded_once_per_process(tiny_models_dir: Path) -> None:
    spec = pipelines.PipelineSpec(
        key="tiny-baseline-b", version="cache-test", source=str(tiny_models_dir / "tiny-baseline-b")
    )
    assert pipelines.get_pipeline(spec) is pipelines.get_pipeline(spec)


def test_gpu_options_are_skipped_on_the_cpu(tiny_models_dir: Path) -> None:
    pipe = pipelines.load_pipeline(
        pipelines.PipelineSpec(
            key="t", version="1", source=str(tiny_models_dir / "tiny-inhouse"), dtype="float16"
        ),
        device="cpu",
    )
    import torch

    assert pipe.unet.dtype == torch.float32, "half precision only on CUDA"


def test_a_family_without_image_to_image_refuses_to_refine(loaded: dict[str, object]) -> None:
    class Other:
        pass

    with pytest.raises(ValueError, match="no image-to-image"):
        pipelines.image_to_image(Other())


# --- Every family, by its own recipe -------------------------------------------------------------

# Denoiser evaluations (batch rows through the UNet or transformer) per step at guidance 5.0 with a
# negative prompt: 2 where classifier-free guidance runs (one conditional, one unconditional), 1 for
# FLUX, whose [dev] is guidance-distilled (the scale is an input) and [schnell] has no guidance.
EVALUATIONS_PER_STEP = {
    "tiny-inhouse": 2,
    "tiny-sdxl": 2,
    "tiny-sd3": 2,
    "tiny-pixart": 2,
    "tiny-sana": 2,
    "tiny-flux-dev": 1,
    "tiny-flux-schnell": 1,
    "tiny-qwen-image": 2,
}
FAMILY_TWINS = list(EVALUATIONS_PER_STEP)
# diffusers 0.42 declares repeated blocks for the UNets, FLUX and Qwen-Image; not for SD3, PixArt
# or Sana, whose compile_repeated_blocks raises.
COMPILE_CHOICE = {
    "tiny-inhouse": "regional",
    "tiny-sdxl": "regional",
    "tiny-sd3": "whole",
    "tiny-pixart": "whole",
    "tiny-sana": "whole",
    "tiny-flux-dev": "regional",
    "tiny-flux-schnell": "regional",
    "tiny-qwen-image": "regional",
}
REFINABLE = ["tiny-inhouse", "tiny-sdxl", "tiny-sd3", "tiny-flux-dev", "tiny-qwen-image"]


def spec(models_dir: Path, name: str, **options: Any) -> pipelines.PipelineSpec:
    return pipelines.PipelineSpec(
        key=name,
        version="1",
        source=str(models_dir / name),
        pipeline_class=tiny.TINY_PIPELINE_CLASSES[name],
        **options,
    )


@pytest.fixture(scope="module")
def families(tiny_models_dir: Path) -> dict[str, Any]:
    return {
        name: pipelines.load_pipeline(spec(tiny_models_dir, name), device="cpu")
        for name in FAMILY_TWINS
    }


class DenoiserCalls:
    """Counts the denoiser's calls and batch rows, and keeps each call's ``guidance`` input."""

    def __init__(self, pipe: Any) -> None:
        self.calls = 0
        self.rows = 0
        self.guidance: list[Any] = []
        denoiser = pipelines.denoiser_of(pipe)
        self._handle = denoiser.register_forward_pre_hook(self._hear, with_kwargs=True)

    def _hear(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        sample = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        assert sample is not None
        self.calls += 1
        self.rows += int(sample.shape[0])
        self.guidance.append(kwargs.get("guidance"))

    def __enter__(self) -> DenoiserCalls:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()


def make(pipe: Any, *, seed: int = 7, steps: int = 4, guidance: float = 5.0, **extra: Any) -> Any:
    return pipelines.generate(
        pipe,
        prompt="a red fox",
        negative_prompt=extra.pop("negative_prompt", "blurry"),
        seed=seed,
        steps=steps,
        guidance=guidance,
        width=64,
        height=64,
        **extra,
    )


@pytest.mark.parametrize("name", FAMILY_TWINS)
def test_each_family_runs_its_own_recipe_through_generate(
    families: dict[str, Any], name: str
) -> None:
    pipe = families[name]
    assert type(pipe).__name__ == tiny.TINY_PIPELINE_CLASSES[name]
    steps: list[int] = []
    with DenoiserCalls(pipe) as calls:
        image = make(pipe, steps=4, on_step=steps.append)
    assert image.size == (64, 64) and image.mode == "RGB"
    assert steps == [1, 2, 3, 4]
    assert calls.rows == 4 * EVALUATIONS_PER_STEP[name], f"{name}: {calls.rows} rows in 4 steps"


def test_guidance_distilled_flux_makes_one_call_per_step_with_the_scale_as_input(
    families: dict[str, Any],
) -> None:
    # The bug this guards: true_cfg_scale set from guidance made FLUX.1 [dev] run real CFG on
    # top, two transformer calls per step.
    with DenoiserCalls(families["tiny-flux-dev"]) as calls:
        make(families["tiny-flux-dev"], steps=4, guidance=3.5, negative_prompt="blurry")
    assert calls.calls == 4
    assert all(float(g[0]) == 3.5 for g in calls.guidance)


def test_schnell_style_flux_gets_no_guidance_input(families: dict[str, Any]) -> None:
    with DenoiserCalls(families["tiny-flux-schnell"]) as calls:
        make(families["tiny-flux-schnell"], steps=4, guidance=3.5)
    assert calls.calls == 4 and calls.guidance == [None] * 4


def test_flux_dev_images_depend_on_the_guidance_scale_and_not_on_the_negative_prompt(
    families: dict[str, Any],
) -> None:
    pipe = families["tiny-flux-dev"]
    base = np.asarray(make(pipe, guidance=3.5), dtype=np.int16)
    other_negative = np.asarray(make(pipe, guidance=3.5, negative_prompt="ugly"), dtype=np.int16)
    assert np.abs(base - other_negative).max() <= PIXEL_TOLERANCE
    other_scale = np.asarray(make(pipe, guidance=8.0), dtype=np.int16)
    assert np.abs(base - other_scale).max() > PIXEL_TOLERANCE


def test_qwen_image_guides_through_true_cfg_with_a_blank_negative_prompt(
    families: dict[str, Any],
) -> None:
    pipe = families["tiny-qwen-image"]
    with DenoiserCalls(pipe) as calls:
        make(pipe, steps=3, negative_prompt="")  # " " stands in, so CFG still runs
    assert calls.calls == 6, "two transformer calls per step: conditional and unconditional"
    with DenoiserCalls(pipe) as calls:
        make(pipe, steps=3, guidance=1.0)
    assert calls.calls == 3, "true_cfg_scale 1 switches guidance off"


@pytest.mark.parametrize("name", FAMILY_TWINS)
def test_each_family_gives_the_same_image_for_the_same_seed_and_another_for_another(
    families: dict[str, Any], name: str
) -> None:
    pipe = families[name]
    first = np.asarray(make(pipe, seed=3), dtype=np.int16)
    assert np.abs(np.asarray(make(pipe, seed=3), dtype=np.int16) - first).max() <= PIXEL_TOLERANCE
    assert np.abs(np.asarray(make(pipe, seed=4), dtype=np.int16) - first).mean() > 1


@pytest.mark.parametrize("name", FAMILY_TWINS)
def test_compile_is_regional_where_repeated_blocks_are_declared_and_whole_otherwise(
    tiny_models_dir: Path, name: str
) -> None:
    # torch.compile is lazy: marking the modules is what can fail at load (it raised for SD3,
    # PixArt and Sana); the compilation itself would only happen at the first call.
    pipe = pipelines.load_pipeline(spec(tiny_models_dir, name), device="cpu")
    assert pipelines.compile_denoiser(pipe) == COMPILE_CHOICE[name]
    denoiser = pipelines.denoiser_of(pipe)
    compiled = [m for m in denoiser.modules() if getattr(m, "_compiled_call_impl", None)]
    if COMPILE_CHOICE[name] == "regional":
        assert compiled and denoiser not in compiled
        assert {type(m).__name__ for m in compiled} <= set(denoiser._repeated_blocks)
    else:
        assert compiled == [denoiser]


@pytest.mark.parametrize("name", ["tiny-inhouse", "tiny-sana", "tiny-qwen-image"])
def test_vae_tiling_is_off_unless_the_registry_sets_it(tiny_models_dir: Path, name: str) -> None:
    plain = pipelines.load_pipeline(spec(tiny_models_dir, name), device="cpu")
    tiled = pipelines.load_pipeline(spec(tiny_models_dir, name, vae_tiling=True), device="cpu")
    assert plain.vae.use_tiling is False
    assert tiled.vae.use_tiling is True


@pytest.mark.parametrize("name", REFINABLE)
def test_refining_goes_through_diffusers_image_to_image_twin_sharing_the_weights(
    families: dict[str, Any], name: str
) -> None:
    pipe = families[name]
    derived = pipelines.image_to_image(pipe)
    assert type(derived).__name__.startswith(type(pipe).__name__.removesuffix("Pipeline"))
    assert "Img2Img" in type(derived).__name__
    assert pipelines.denoiser_of(derived) is pipelines.denoiser_of(pipe)
    assert pipelines.image_to_image(pipe) is derived, "made once per pipeline"


@pytest.mark.parametrize("name", REFINABLE)
def test_refining_depends_on_the_source_image_and_the_strength_in_every_family(
    families: dict[str, Any], name: str
) -> None:
    from PIL import Image

    pipe = families[name]
    first = make(pipe, seed=21, steps=8)
    second = Image.fromarray(255 - np.asarray(first))
    steps_seen: list[int] = []

    def refined(source: Image.Image, strength: float) -> np.ndarray:
        image = make(
            pipe, seed=5, steps=8, init_image=source, strength=strength, on_step=steps_seen.append
        )
        assert image.size == (64, 64)
        return np.asarray(image, dtype=np.int16)

    base = refined(first, 0.5)
    assert np.abs(base - refined(first, 0.5)).max() <= PIXEL_TOLERANCE
    # Random-weight VAEs barely carry the source through, so the bar is "clearly more than
    # run-to-run noise", not "looks like the source".
    other_source = np.abs(base - refined(second, 0.5))
    assert other_source.max() > 2 * PIXEL_TOLERANCE and other_source.mean() > 0.1
    other_strength = np.abs(base - refined(first, 0.9))
    assert other_strength.max() > 2 * PIXEL_TOLERANCE and other_strength.mean() > 0.1
    assert steps_seen[-1] == 8, "progress is scaled to the requested steps"


@pytest.mark.parametrize(
    ("class_name", "expected"),
    [
        ("StableDiffusionPipeline", True),
        ("StableDiffusionXLPipeline", True),
        ("StableDiffusion3Pipeline", True),
        ("FluxPipeline", True),
        ("QwenImagePipeline", True),
        ("PixArtSigmaPipeline", False),
        ("SanaPipeline", False),
        ("", False),
    ],
)
def test_can_refine_follows_diffusers_own_image_to_image_mapping(
    class_name: str, expected: bool
) -> None:
    assert pipelines.can_refine(class_name) is expected


def test_a_batch_makes_one_image_per_seed_like_single_runs(families: dict[str, Any]) -> None:
    pipe = families["tiny-flux-schnell"]
    batch = pipelines.generate_batch(
        pipe,
        prompts=["a red fox"] * 2,
        seeds=[7, 8],
        negative_prompt="",
        steps=4,
        guidance=5.0,
        width=64,
        height=64,
    )
    single = make(pipe, seed=8, negative_prompt="")
    assert len(batch) == 2
    # Batched and single runs may differ by a pixel level, no more.
    diff = np.abs(np.asarray(batch[1], dtype=np.int16) - np.asarray(single, dtype=np.int16))
    assert diff.max() <= 2


# --- Several models in one process: shared components, a memory budget ------------------------


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    pipelines.clear_cache()
    pipelines.set_memory_budget(None)
    yield
    pipelines.clear_cache()
    pipelines.set_memory_budget(pipelines.memory_budget_from_env())


def test_identical_text_encoders_are_loaded_once(tiny_models_dir: Path, fresh_cache: None) -> None:
    dev = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    schnell = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
    assert dev.text_encoder is schnell.text_encoder
    assert dev.text_encoder_2 is schnell.text_encoder_2
    assert dev.transformer is not schnell.transformer, "different weights stay apart"
    # And both still make their own images.
    assert (
        np.abs(
            np.asarray(make(dev), dtype=np.int16) - np.asarray(make(schnell), dtype=np.int16)
        ).mean()
        > 1
    )


def test_weights_are_hashed_only_when_a_component_could_match_a_loaded_one(
    tiny_models_dir: Path, fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hashing a large local checkpoint costs about a second per GB at every worker start: only
    # components whose class, configs and file sizes equal a loaded one's are hashed.
    hashed: list[str] = []
    original = pipelines._file_hash

    def counting(path: Path) -> str:
        hashed.append(path.parent.name)
        return original(path)

    monkeypatch.setattr(pipelines, "_file_hash", counting)
    dev = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-baseline-a"))
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-pixart"))
    assert hashed == [], "no component of these has the shape of another's"
    # SD3's T5 and VAE have FLUX's shapes but other weights: hashed, and kept apart.
    sd3 = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-sd3"))
    assert {"text_encoder_3", "text_encoder_2", "vae"} <= set(hashed)
    assert sd3.text_encoder_3 is not dev.text_encoder_2 and sd3.vae is not dev.vae
    schnell = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
    assert schnell.text_encoder_2 is dev.text_encoder_2


def test_a_component_is_not_shared_across_dtypes_or_tiling(
    tiny_models_dir: Path, fresh_cache: None
) -> None:
    plain = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-inhouse"))
    tiled = pipelines.get_pipeline(
        pipelines.PipelineSpec(
            key="tiled", version="1", source=str(tiny_models_dir / "tiny-inhouse"), vae_tiling=True
        )
    )
    assert plain.text_encoder is tiled.text_encoder
    assert plain.vae is not tiled.vae and plain.vae.use_tiling is False


def weights(pipe: Any) -> int:
    return pipelines._weight_bytes(pipelines._modules(pipe).values())


def test_models_beyond_the_budget_wait_in_cpu_memory_least_recently_used_first(
    tiny_models_dir: Path, fresh_cache: None
) -> None:
    names = ["tiny-inhouse", "tiny-baseline-a", "tiny-sd3"]
    sizes = {}
    for name in names:  # measure, then start over under a budget that holds two of the three
        sizes[name] = weights(pipelines.get_pipeline(spec(tiny_models_dir, name)))
    pipelines.clear_cache()
    budget = max(sizes[a] + sizes[b] for a in names for b in names if a != b)
    assert budget < sum(sizes.values())
    pipelines.set_memory_budget(budget)
    for name in names[:2]:
        pipelines.get_pipeline(spec(tiny_models_dir, name))
    assert [k for k, _ in pipelines.on_device_keys()] == names[:2]
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-inhouse"))  # now the most recent
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-sd3"))
    assert [k for k, _ in pipelines.evictions()] == ["tiny-baseline-a"]
    assert [k for k, _ in pipelines.on_device_keys()] == ["tiny-inhouse", "tiny-sd3"]
    assert pipelines.resident_bytes() <= budget
    # The evicted model comes back on its next job, pushing out the least recently used.
    pipe = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-baseline-a"))
    assert [k for k, _ in pipelines.evictions()] == ["tiny-baseline-a", "tiny-inhouse"]
    assert make(pipe).size == (64, 64)
    assert len(pipelines.swap_seconds()[("tiny-baseline-a", "1")]) == 2


def test_lowering_the_budget_moves_the_least_recently_used_models_out_at_once(
    tiny_models_dir: Path, fresh_cache: None
) -> None:
    for name in ["tiny-inhouse", "tiny-baseline-a", "tiny-baseline-b"]:
        pipelines.get_pipeline(spec(tiny_models_dir, name))
    newest = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-baseline-b"))
    pipelines.set_memory_budget(weights(newest))
    assert [k for k, _ in pipelines.on_device_keys()] == ["tiny-baseline-b"]
    assert [k for k, _ in pipelines.evictions()] == ["tiny-inhouse", "tiny-baseline-a"]


def test_a_shared_component_counts_once_against_the_budget(
    tiny_models_dir: Path, fresh_cache: None
) -> None:
    dev = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    alone = weights(dev)
    schnell_own = pipelines._weight_bytes(
        m
        for i, m in pipelines._modules(
            pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
        ).items()
        if i not in pipelines._modules(dev)
    )
    pipelines.clear_cache()
    # Room for dev plus schnell's own parts only: the shared text encoders must not be counted
    # twice, so nothing is evicted.
    pipelines.set_memory_budget(alone + schnell_own)
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
    assert pipelines.evictions() == []
    assert len(pipelines.on_device_keys()) == 2


def test_a_model_larger_than_the_whole_budget_is_refused_by_name(
    tiny_models_dir: Path, fresh_cache: None
) -> None:
    pipelines.set_memory_budget(1024)
    with pytest.raises(ValueError, match="model tiny-sd3 needs .* ARENA_GPU_MEMORY_GB allows"):
        pipelines.get_pipeline(spec(tiny_models_dir, "tiny-sd3"))


@pytest.mark.parametrize(
    ("raw", "expected"), [("", None), ("0", None), ("1.5", int(1.5 * 1024**3))]
)
def test_the_budget_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int | None
) -> None:
    monkeypatch.setenv("ARENA_GPU_MEMORY_GB", raw)
    assert pipelines.memory_budget_from_env() == expected


@pytest.mark.parametrize("raw", ["lots", "-1", "nan"])
def test_a_bad_budget_fails_loudly(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("ARENA_GPU_MEMORY_GB", raw)
    with pytest.raises(ValueError, match="ARENA_GPU_MEMORY_GB"):
        pipelines.memory_budget_from_env()


# --- An in-house pipeline class -------------------------------------------------------------------

CUSTOM_MODULE = '''
from diffusers import StableDiffusionPipeline


class InvertedPipeline(StableDiffusionPipeline):
    """A lab's own pipeline: Stable Diffusion that hands back the negative of the image."""

    def __call__(self, *args, **kwargs):
        from PIL import ImageOps

        result = super().__call__(*args, **kwargs)
        result.images = [ImageOps.invert(image) for image in result.images]
        return result
'''


@pytest.fixture
def custom_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "ourlab_pipelines.py").write_text(CUSTOM_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "ourlab_pipelines:InvertedPipeline"


def test_a_custom_pipeline_class_loads_and_runs_through_the_same_path(
    tiny_models_dir: Path, custom_module: str, loaded: dict[str, object]
) -> None:
    custom = pipelines.load_pipeline(
        pipelines.PipelineSpec(
            key="ours",
            version="1",
            source=str(tiny_models_dir / "tiny-inhouse"),
            custom_pipeline=custom_module,
        ),
        device="cpu",
    )
    assert type(custom).__name__ == "InvertedPipeline"
    assert pipelines.family_of(custom) == "StableDiffusionPipeline", "its recipe is inherited"
    steps: list[int] = []
    mine = np.asarray(make(custom, negative_prompt="", on_step=steps.append), dtype=np.int16)
    stock = np.asarray(make(loaded["tiny-inhouse"], negative_prompt=""), dtype=np.int16)
    assert steps == [1, 2, 3, 4]
    assert np.abs(mine - (255 - stock)).max() <= PIXEL_TOLERANCE


def test_a_custom_pipeline_must_be_a_diffusion_pipeline() -> None:
    with pytest.raises(ValueError, match="not a diffusers.DiffusionPipeline subclass"):
        pipelines.import_custom_pipeline("pathlib:Path")
    with pytest.raises(ValueError, match="must look like"):
        pipelines.import_custom_pipeline("pathlib.Path")


def test_evicting_a_model_keeps_components_that_a_model_on_the_device_still_uses(
    tiny_models_dir: Path, fresh_cache: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    schnell = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
    flux_pair = pipelines.resident_bytes()  # the shared encoders counted once
    sd3 = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-sd3"))
    # Both FLUX twins fit, and schnell with SD3, but not all three.
    budget = max(flux_pair, weights(schnell) + weights(sd3))
    assert budget < pipelines.resident_bytes()
    pipelines.clear_cache()
    pipelines.set_memory_budget(budget)
    dev = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-dev"))
    schnell = pipelines.get_pipeline(spec(tiny_models_dir, "tiny-flux-schnell"))
    moved_out: list[int] = []
    original_to = torch.nn.Module.to

    def spy(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        target = args[0] if args else kwargs.get("device")
        if str(target) == "cpu":
            moved_out.append(id(module))
        return original_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", spy)
    pipelines.get_pipeline(spec(tiny_models_dir, "tiny-sd3"))
    assert [k for k, _ in pipelines.evictions()] == ["tiny-flux-dev"]
    assert id(dev.transformer) in moved_out and id(dev.vae) in moved_out
    assert id(dev.text_encoder) not in moved_out, "schnell, still on the device, uses it"
    assert id(dev.text_encoder_2) not in moved_out
