"""The model registry file: validated on load, errors name the file, the model and the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from generation import services
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
    entry = '[[model]]\nkey = "ours"\ndisplay_name = "Ours"\nsource = "x"\nversion = "{v}"\n'
    services.sync_models(path=write(tmp_path, entry.format(v="1")))
    services.sync_models(path=write(tmp_path, entry.format(v="2")))
    old, new = ImageModel.objects.order_by("version")
    assert (old.version, old.retired, old.enabled) == ("1", True, False)
    assert (new.version, new.retired, new.enabled) == ("2", False, True)
    services.sync_models(path=write(tmp_path, entry.format(v="2")))
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
    )
    with pytest.raises(RegistryError, match="diffusers has no FluxPipelin"):
        services.sync_models(path=write(tmp_path, body))
    assert not ImageModel.objects.exists()
