"""The example production registry (deploy/models.example.toml) is valid and deployable."""

from __future__ import annotations

from pathlib import Path

import diffusers
import pytest

from generation.registry import ModelEntry, load_registry

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "models.example.toml"
# The Redis transport's default visibility timeout (CELERY_VISIBILITY_TIMEOUT): a job must end
# before its unacknowledged message is handed to another worker.
VISIBILITY_TIMEOUT_S = 3600
MIN_DIFFUSERS_BASELINES = 5


@pytest.fixture
def entries(tmp_path: Path) -> list[ModelEntry]:
    return load_registry(EXAMPLE, models_dir=tmp_path)


def diffusers_entries(entries: list[ModelEntry]) -> list[ModelEntry]:
    return [e for e in entries if e.backend == "diffusers"]


def is_hub_id(source: str) -> bool:
    """The registry's own rule: "owner/name", no scheme, not a relative path."""
    return "://" not in source and source.count("/") == 1 and not source.startswith(".")


def test_the_example_registry_loads(entries: list[ModelEntry]) -> None:
    assert entries


def test_it_has_exactly_one_in_house_model(entries: list[ModelEntry]) -> None:
    assert [e.key for e in entries if e.in_house] == ["ours-v3"]


def test_it_has_at_least_five_diffusers_baselines(entries: list[ModelEntry]) -> None:
    baselines = [e for e in diffusers_entries(entries) if not e.in_house]
    assert len(baselines) >= MIN_DIFFUSERS_BASELINES


def test_every_pipeline_class_is_a_diffusers_pipeline(entries: list[ModelEntry]) -> None:
    for entry in diffusers_entries(entries):
        cls = getattr(diffusers, entry.pipeline_class, None)
        assert isinstance(cls, type), f"{entry.key}: no diffusers.{entry.pipeline_class}"
        assert issubclass(cls, diffusers.DiffusionPipeline), entry.key


def test_every_named_scheduler_is_a_diffusers_class(entries: list[ModelEntry]) -> None:
    for entry in diffusers_entries(entries):
        if entry.scheduler:
            assert isinstance(getattr(diffusers, entry.scheduler, None), type), entry.key


def test_every_hub_source_pins_a_full_commit(entries: list[ModelEntry]) -> None:
    hub = [e for e in diffusers_entries(entries) if is_hub_id(e.source)]
    assert hub
    for entry in hub:
        assert entry.revision, f"{entry.key}: hub source without a revision"
        assert len(entry.revision) == 40, f"{entry.key}: revision is not a full commit"
        assert all(c in "0123456789abcdef" for c in entry.revision), entry.key


def test_the_in_house_source_is_a_local_directory(entries: list[ModelEntry]) -> None:
    (ours,) = [e for e in entries if e.in_house]
    assert Path(ours.source).is_absolute()
    assert not is_hub_id(ours.source)


def test_every_timeout_ends_before_the_visibility_timeout(entries: list[ModelEntry]) -> None:
    # The hard limit each job runs under is timeout_s + 15 (generation.jobs.enqueue).
    for entry in entries:
        assert entry.timeout_s + 15 < VISIBILITY_TIMEOUT_S, entry.key


def test_keys_are_unique(entries: list[ModelEntry]) -> None:
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))


def test_an_http_model_has_an_https_source(entries: list[ModelEntry]) -> None:
    http = [e for e in entries if e.backend == "http"]
    assert http
    for entry in http:
        assert entry.source.startswith("https://"), entry.key
        assert not entry.pipeline_class, entry.key


def test_every_model_has_its_own_gpu_queue_or_the_remote_queue(entries: list[ModelEntry]) -> None:
    # Model jobs never share "default" with the leaderboard refresh and the sweeper.
    for entry in entries:
        assert entry.queue != "default", entry.key
        expected_prefix = "gpu-" if entry.backend == "diffusers" else "remote"
        assert entry.queue.startswith(expected_prefix), entry.key


def test_every_diffusers_family_in_the_example_has_a_tiny_twin_and_a_recipe(
    entries: list[ModelEntry],
) -> None:
    from generation import pipelines, tiny

    for entry in diffusers_entries(entries):
        assert entry.pipeline_class in tiny.TINY_PIPELINE_CLASSES.values(), entry.key
        assert entry.pipeline_class in pipelines.FAMILY_RECIPES, entry.key
        assert not entry.vae_tiling, f"{entry.key}: tiling is off unless a model needs it"


def test_the_http_example_names_its_secret_by_environment_variable(
    entries: list[ModelEntry],
) -> None:
    (partner,) = [e for e in entries if e.backend == "http"]
    assert dict(partner.headers_from_env) == {"Authorization": "PARTNER_MODEL_AUTH"}


@pytest.mark.django_db
def test_sync_refuses_the_example_until_its_placeholders_are_replaced(
    tmp_path: Path, settings: object
) -> None:
    from generation import registry_sync
    from generation.models import ImageModel
    from generation.registry import RegistryError

    with pytest.raises(RegistryError, match="model ours-v3: field 'source': directory"):
        registry_sync.sync_models(path=EXAMPLE)
    # With the in-house directory present, the first placeholder revision is what stops it.
    ours = tmp_path / "ours-v3"
    ours.mkdir()
    (ours / "model_index.json").write_text('{"_class_name": "FluxPipeline"}', encoding="utf-8")
    edited = tmp_path / "models.toml"
    edited.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("/srv/arena/models/ours-v3", str(ours)),
        encoding="utf-8",
    )
    with pytest.raises(RegistryError, match="model sdxl-base: field 'revision' is the all-zero"):
        registry_sync.sync_models(path=edited)
    assert not ImageModel.objects.exists()
    pinned = tmp_path / "pinned.toml"
    pinned.write_text(
        edited.read_text(encoding="utf-8").replace("0" * 40, "0123456789abcdef" * 2 + "01234567"),
        encoding="utf-8",
    )
    current, _ = registry_sync.sync_models(path=pinned)
    refine = {m.key: m.can_refine for m in current}
    assert refine["flux1-dev"] and refine["qwen-image"] and refine["sd35-large"]
    assert not refine["pixart-sigma"] and not refine["sana-1600m"]
    assert not refine["partner-model"]
