"""The model registry file: validated on load, errors name the file, the model and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from generation import jobs, registry_sync, runner
from generation.models import ImageModel
from generation.registry import RegistryError, load_registry

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_demo_registry_loads_with_sources_under_the_models_dir(tmp_path: Path) -> None:
    entries = load_registry(ROOT / "deploy" / "models.tiny.toml", models_dir=tmp_path)
    assert [e.key for e in entries] == [
        "tiny-inhouse",
        "tiny-baseline-a",
        "tiny-baseline-b",
        "tiny-sdxl",
        "tiny-pixart",
    ]
    assert sum(e.in_house for e in entries) == 1
    assert not any(e.vae_tiling for e in entries), "tiling is off unless a model sets it"
    assert all(e.source.startswith(str(tmp_path)) for e in entries)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[[model]]\nkey = "a"\ndisplay_name = "A"\n', "field 'source' is required"),
        (
            '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\nsteps = "four"\n',
            "field 'steps' must be int",
        ),
        (
            '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\ncolour = 1\n',
            "unknown field(s) colour",
        ),
        (
            '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\nbackend = "onnx"\n',
            "field 'backend' must be one of",
        ),
        (
            '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\nwidth = 0\n',
            "field 'width' must be positive",
        ),
        ("[[model]\n", "not valid TOML"),
        ("", "expected one or more [[model]] tables"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_file_model_and_field(
    tmp_path: Path, body: str, message: str
) -> None:
    path = write(tmp_path, body)
    with pytest.raises(RegistryError) as error:
        load_registry(path, models_dir=tmp_path)
    assert str(path) in str(error.value) and message in str(error.value)
    if "[[model]]\nkey" in body:
        assert "model #1 (a)" in str(error.value)


def test_a_repeated_key_and_version_is_refused(tmp_path: Path) -> None:
    entry = '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\n'
    with pytest.raises(RegistryError, match="model #2 .* repeat"):
        load_registry(write(tmp_path, entry * 2), models_dir=tmp_path)


@pytest.mark.django_db
def test_a_new_version_becomes_a_new_entry_and_retires_the_old_one(
    tmp_path: Path, settings: Any
) -> None:
    settings.MODELS_DIR = tmp_path
    entry = (
        '[[model]]\nkey = "ours"\ndisplay_name = "Ours"\nsource = "x"\nversion = "{v}"\n'
        "dev_skip_source_check = true\n"
    )
    registry_sync.sync_models(path=write(tmp_path, entry.format(v="1")))
    registry_sync.sync_models(path=write(tmp_path, entry.format(v="2")))
    old, new = ImageModel.objects.order_by("version")
    assert (old.version, old.retired, old.enabled) == ("1", True, False)
    assert (new.version, new.retired, new.enabled) == ("2", False, True)
    registry_sync.sync_models(path=write(tmp_path, entry.format(v="2")))
    assert ImageModel.objects.count() == 2, "syncing again changes nothing"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('source = "stabilityai/sdxl-turbo"\n', "field 'revision' must pin a commit"),
        ('source = "https://x.example/gen"\n', "must be a local directory or a hub id"),
        ('source = "models/a/b"\n', "must be a local directory or a hub id"),
        ('backend = "http"\nsource = "ftp://x/y"\n', "field 'source' must be an http(s) URL"),
        ('source = "x"\ntimeout_s = 4000\n', "field 'timeout_s' must stay below 3600 s"),
    ],
)
def test_sources_revisions_and_time_limits_are_checked(
    tmp_path: Path, fields: str, message: str
) -> None:
    path = write(tmp_path, f'[[model]]\nkey = "a"\ndisplay_name = "A"\n{fields}')
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_registry(path, models_dir=tmp_path)


def test_an_absolute_local_source_is_kept_as_it_is(tmp_path: Path) -> None:
    path = write(tmp_path, '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "/srv/ours"\n')
    assert load_registry(path, models_dir=tmp_path)[0].source == "/srv/ours"


@pytest.mark.django_db
def test_a_misspelt_pipeline_class_is_refused_at_sync(tmp_path: Path, settings: Any) -> None:
    settings.MODELS_DIR = tmp_path
    body = (
        '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "x"\npipeline_class = "FluxPipelin"\n'
        "dev_skip_source_check = true\n"
    )
    with pytest.raises(RegistryError, match="diffusers has no FluxPipelin"):
        registry_sync.sync_models(path=write(tmp_path, body))
    assert not ImageModel.objects.exists()


HUB = '[[model]]\nkey = "hub"\ndisplay_name = "Hub"\nsource = "owner/name"\n'
PINNED = 'revision = "0123456789abcdef0123456789abcdef01234567"\n'


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            'revision = "' + "0" * 40 + '"\n',
            "model hub: field 'revision' is the all-zero placeholder",
        ),
        ('revision = "main"\n', "model hub: field 'revision' must be a full 40-character commit"),
        ('revision = "0123abc"\n', "model hub: field 'revision' must be a full 40-character"),
    ],
)
def test_sync_refuses_a_hub_source_not_pinned_to_a_commit(
    tmp_path: Path, settings: Any, fields: str, message: str
) -> None:
    settings.MODELS_DIR = tmp_path
    path = write(tmp_path, HUB + fields)
    with pytest.raises(RegistryError, match=re.escape(message)) as error:
        registry_sync.sync_models(path=path)
    assert str(path) in str(error.value)
    assert not ImageModel.objects.exists()


@pytest.mark.django_db
def test_sync_refuses_a_local_directory_that_does_not_exist(tmp_path: Path, settings: Any) -> None:
    settings.MODELS_DIR = tmp_path
    body = '[[model]]\nkey = "gone"\ndisplay_name = "Gone"\nsource = "nowhere"\n'
    with pytest.raises(RegistryError, match=r"model gone: field 'source': directory .*nowhere"):
        registry_sync.sync_models(path=write(tmp_path, body))
    assert not ImageModel.objects.exists()


@pytest.mark.django_db
def test_sync_refuses_a_directory_that_holds_no_saved_pipeline(
    tmp_path: Path, settings: Any
) -> None:
    settings.MODELS_DIR = tmp_path
    (tmp_path / "empty").mkdir()
    body = '[[model]]\nkey = "empty"\ndisplay_name = "E"\nsource = "empty"\n'
    with pytest.raises(RegistryError, match="model empty: field 'source': .* no model_index.json"):
        registry_sync.sync_models(path=write(tmp_path, body))


@pytest.mark.django_db
def test_one_bad_entry_keeps_every_entry_out(tmp_path: Path, settings: Any) -> None:
    settings.MODELS_DIR = tmp_path
    good = HUB + PINNED
    bad = '[[model]]\nkey = "gone"\ndisplay_name = "Gone"\nsource = "nowhere"\n'
    with pytest.raises(RegistryError, match="model gone"):
        registry_sync.sync_models(path=write(tmp_path, good + bad))
    assert not ImageModel.objects.exists()


@pytest.mark.django_db
def test_the_development_override_lets_an_unchecked_source_in(
    tmp_path: Path, settings: Any
) -> None:
    settings.MODELS_DIR = tmp_path
    body = (
        HUB
        + 'revision = "main"\ndev_skip_source_check = true\n'
        + '[[model]]\nkey = "gone"\ndisplay_name = "G"\nsource = "nowhere"\n'
        + "dev_skip_source_check = true\n"
    )
    current, _ = registry_sync.sync_models(path=write(tmp_path, body))
    assert sorted(m.key for m in current) == ["gone", "hub"]


@pytest.mark.django_db
def test_a_pinned_hub_source_is_accepted(tmp_path: Path, settings: Any) -> None:
    settings.MODELS_DIR = tmp_path
    (model,), _ = registry_sync.sync_models(path=write(tmp_path, HUB + PINNED))
    assert model.revision == PINNED.split('"')[1]


@pytest.mark.django_db
def test_sync_records_which_models_can_refine(models: list[Any]) -> None:
    refine = {m.key: m.can_refine for m in ImageModel.objects.all()}
    # Stable Diffusion and SDXL have image-to-image twins in diffusers; PixArt-Sigma has none.
    assert refine == {
        "tiny-inhouse": True,
        "tiny-baseline-a": True,
        "tiny-baseline-b": True,
        "tiny-sdxl": True,
        "tiny-pixart": False,
    }


@pytest.mark.django_db
def test_can_refine_is_read_from_model_index_when_no_class_is_named(
    tiny_models_dir: Path, tmp_path: Path, settings: Any
) -> None:
    settings.MODELS_DIR = tiny_models_dir
    body = (
        '[[model]]\nkey = "a"\ndisplay_name = "A"\nsource = "tiny-flux-dev"\n'
        '[[model]]\nkey = "b"\ndisplay_name = "B"\nsource = "tiny-sana"\n'
    )
    registry_sync.sync_models(path=write(tmp_path, body))
    assert dict(ImageModel.objects.values_list("key", "can_refine")) == {"a": True, "b": False}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            'backend = "http"\nsource = "https://x.example/g"\n'
            'headers_from_env = { Authorization = "not a name" }\n',
            "field 'headers_from_env' maps header names to environment variable names",
        ),
        (
            'backend = "http"\nsource = "https://x.example/g"\n'
            'headers_from_env = { "Bad Header" = "TOKEN" }\n',
            "field 'headers_from_env' maps header names",
        ),
        (
            'source = "x"\nheaders_from_env = { Authorization = "TOKEN" }\n',
            "field 'headers_from_env' is for http models",
        ),
        ('source = "x"\ncustom_pipeline = "no_colon"\n', "field 'custom_pipeline' must look like"),
        (
            'backend = "http"\nsource = "https://x.example/g"\ncustom_pipeline = "a:B"\n',
            "field 'custom_pipeline' is for diffusers models",
        ),
        ('source = "x"\nvae_tiling = "yes"\n', "field 'vae_tiling' must be bool"),
    ],
)
def test_integration_fields_are_checked(tmp_path: Path, fields: str, message: str) -> None:
    path = write(tmp_path, f'[[model]]\nkey = "a"\ndisplay_name = "A"\n{fields}')
    with pytest.raises(RegistryError, match=re.escape(message)):
        load_registry(path, models_dir=tmp_path)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ("no_such_module_here:Pipe", "cannot import no_such_module_here"),
        ("json:JSONDecoder", "is not a diffusers.DiffusionPipeline subclass"),
        ("json:nothing", "is not a diffusers.DiffusionPipeline subclass"),
    ],
)
def test_a_custom_pipeline_that_is_not_an_importable_pipeline_is_refused_at_sync(
    tmp_path: Path, settings: Any, custom: str, message: str
) -> None:
    settings.MODELS_DIR = tmp_path
    body = (
        f'[[model]]\nkey = "ours"\ndisplay_name = "O"\nsource = "x"\ncustom_pipeline = "{custom}"\n'
        "dev_skip_source_check = true\n"
    )
    with pytest.raises(RegistryError, match=r"model ours: field 'custom_pipeline': .*" + message):
        registry_sync.sync_models(path=write(tmp_path, body))


@pytest.mark.django_db
def test_http_secrets_stay_in_the_environment_never_in_the_database_or_the_admin(
    tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch, admin_client: Any
) -> None:
    secret = "Bearer s3cret-token-value"
    monkeypatch.setenv("PARTNER_AUTH", secret)
    settings.MODELS_DIR = tmp_path
    body = (
        '[[model]]\nkey = "partner"\ndisplay_name = "P"\nbackend = "http"\n'
        'source = "https://x.example/g"\nheaders_from_env = { Authorization = "PARTNER_AUTH" }\n'
    )
    (model,), _ = registry_sync.sync_models(path=write(tmp_path, body))
    model.refresh_from_db()
    assert model.http_header_env == {"Authorization": "PARTNER_AUTH"}
    row = ImageModel.objects.filter(pk=model.pk).values().get()
    assert "s3cret" not in repr(row)
    page = admin_client.get(f"/admin/generation/imagemodel/{model.pk}/change/")
    assert page.status_code == 200
    assert b"PARTNER_AUTH" in page.content and b"s3cret" not in page.content


@pytest.mark.django_db
def test_an_in_house_custom_pipeline_runs_through_the_arenas_job_path(
    tiny_models_dir: Path, tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation import pipelines
    from generation.models import Generation

    (tmp_path / "ourlab_marked.py").write_text(
        "from diffusers import StableDiffusionPipeline\n\n\n"
        "class MarkedPipeline(StableDiffusionPipeline):\n"
        "    calls = 0\n\n"
        "    def __call__(self, *args, **kwargs):\n"
        "        type(self).calls += 1\n"
        "        return super().__call__(*args, **kwargs)\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.MODELS_DIR = tiny_models_dir
    body = (
        '[[model]]\nkey = "ours-custom"\ndisplay_name = "Ours"\nsource = "tiny-inhouse"\n'
        'custom_pipeline = "ourlab_marked:MarkedPipeline"\nsteps = 3\n'
    )
    (model,), _ = registry_sync.sync_models(path=write(tmp_path, body))
    assert model.custom_pipeline == "ourlab_marked:MarkedPipeline"
    assert not model.can_refine, "diffusers maps no image-to-image twin for an unknown class"
    job = jobs.create_generation(model=model, prompt="a red fox", seed=3)
    runner.run(generation_id=job.pk)
    job.refresh_from_db()
    assert job.status == Generation.Status.DONE, job.error
    pipe = pipelines.get_pipeline(runner.spec_for(model))
    assert type(pipe).__name__ == "MarkedPipeline" and type(pipe).calls == 1
