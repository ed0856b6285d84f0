"""The model registry: a TOML file that lists every model the arena may use.

Validation names the file, the model and the field, so a typo fails at ``sync_models`` rather
than in a worker an hour later.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PIPELINE_FIELDS = {
    "key": str,
    "display_name": str,
    "organisation": str,
    "licence": str,
    "in_house": bool,
    "version": str,
    "backend": str,
    "pipeline_class": str,
    "source": str,
    "revision": str,
    "dtype": str,
    "queue": str,
    "timeout_s": int,
    "sampling_weight": float,
    "enabled": bool,
    "steps": int,
    "guidance": float,
    "width": int,
    "height": int,
    "scheduler": str,
    # Bounds for direct chat; each defaults from the settings above when left out.
    "max_steps": int,
    "min_guidance": float,
    "max_guidance": float,
    "sizes": list,
    # VAE tiling: off unless set; it saves memory only at very large sizes and changes some
    # families' images (Sana, Qwen-Image).
    "vae_tiling": bool,
    # An in-house DiffusionPipeline subclass, "package.module:ClassName" (opt-in, see README).
    "custom_pipeline": str,
    # HTTP models: request header name -> name of the environment variable holding its value.
    "headers_from_env": dict,
    # Development only: enable a hub source that is not pinned to a commit, or a local directory
    # that does not exist (yet), instead of refusing it at sync_models.
    "dev_skip_source_check": bool,
}
REQUIRED = ("key", "display_name", "source")
_SIZE = re.compile(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
BACKENDS = ("diffusers", "http")
DTYPES = ("float32", "float16", "bfloat16")


_COMMIT = re.compile(r"[0-9a-f]{40}")
_PLACEHOLDER_COMMIT = "0" * 40
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CUSTOM_PIPELINE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


class RegistryError(ValueError):
    """The registry file is missing, unreadable or holds an invalid entry."""


@dataclass(frozen=True)
class ModelEntry:
    key: str
    display_name: str
    source: str
    organisation: str = ""
    licence: str = ""
    in_house: bool = False
    version: str = "1"
    backend: str = "diffusers"
    pipeline_class: str = ""
    revision: str = ""
    dtype: str = "float32"
    queue: str = "default"
    timeout_s: int = 120
    sampling_weight: float = 1.0
    enabled: bool = True
    steps: int = 4
    guidance: float = 5.0
    width: int = 64
    height: int = 64
    scheduler: str = ""
    max_steps: int = 0  # 0: twice the default steps
    min_guidance: float = 0.0
    max_guidance: float = 0.0  # 0: twice the default guidance, at least 10
    sizes: tuple[str, ...] = ()  # "WxH" strings; empty: only width x height
    vae_tiling: bool = False
    custom_pipeline: str = ""
    headers_from_env: tuple[tuple[str, str], ...] = ()  # (header, environment variable)
    dev_skip_source_check: bool = False


def _check(path: Path, where: str, name: str, value: Any) -> Any:
    expected = PIPELINE_FIELDS[name]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise RegistryError(
            f"{path}: {where}: field '{name}' must be {expected.__name__}, got {value!r}"
        )
    return value


def load_registry(path: Path, *, models_dir: Path, max_timeout_s: int = 3600) -> list[ModelEntry]:
    """Read and validate the registry; relative local sources resolve under ``models_dir``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(f"{path}: registry file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: not valid TOML: {exc}") from None
    raw_models = data.get("model")
    if not isinstance(raw_models, list) or not raw_models:
        raise RegistryError(f"{path}: expected one or more [[model]] tables")
    entries: list[ModelEntry] = []
    seen: set[tuple[str, str]] = set()
    for index, raw in enumerate(raw_models, start=1):
        where = f"model #{index} ({raw.get('key', 'no key')})"
        unknown = sorted(set(raw) - set(PIPELINE_FIELDS))
        if unknown:
            raise RegistryError(f"{path}: {where}: unknown field(s) {', '.join(unknown)}")
        for name in REQUIRED:
            if not raw.get(name):
                raise RegistryError(f"{path}: {where}: field '{name}' is required")
        values = {name: _check(path, where, name, value) for name, value in raw.items()}
        values["version"] = str(values.get("version", "1"))
        if values.get("backend", "diffusers") not in BACKENDS:
            raise RegistryError(f"{path}: {where}: field 'backend' must be one of {BACKENDS}")
        if values.get("dtype", "float32") not in DTYPES:
            raise RegistryError(f"{path}: {where}: field 'dtype' must be one of {DTYPES}")
        sizes = values.get("sizes", [])
        if not all(isinstance(size, str) and _SIZE.fullmatch(size) for size in sizes):
            raise RegistryError(
                f"{path}: {where}: field 'sizes' must list sizes like \"1024x768\", got {sizes!r}"
            )
        values["sizes"] = tuple(sizes)
        headers = values.get("headers_from_env", {})
        for header, variable in headers.items():
            if not _HEADER_NAME.fullmatch(header) or not (
                isinstance(variable, str) and _ENV_NAME.fullmatch(variable)
            ):
                raise RegistryError(
                    f"{path}: {where}: field 'headers_from_env' maps header names to environment "
                    f'variable names, like {{ Authorization = "PARTNER_AUTH" }}; got {header!r}'
                )
        if headers and values.get("backend", "diffusers") != "http":
            raise RegistryError(f"{path}: {where}: field 'headers_from_env' is for http models")
        values["headers_from_env"] = tuple(sorted(headers.items()))
        custom = values.get("custom_pipeline", "")
        if custom and not _CUSTOM_PIPELINE.fullmatch(custom):
            raise RegistryError(
                f"{path}: {where}: field 'custom_pipeline' must look like "
                f"'package.module:ClassName', got {custom!r}"
            )
        if custom and values.get("backend", "diffusers") != "diffusers":
            raise RegistryError(f"{path}: {where}: field 'custom_pipeline' is for diffusers models")
        for name in ("steps", "width", "height", "timeout_s"):
            if name in values and values[name] < 1:
                raise RegistryError(f"{path}: {where}: field '{name}' must be positive")
        if values.get("sampling_weight", 1.0) < 0:
            raise RegistryError(f"{path}: {where}: field 'sampling_weight' must be >= 0")
        source = values["source"]
        backend = values.get("backend", "diffusers")
        local = source.startswith(("/", ".", "~")) or "/" not in source
        is_hub_id = not local and "://" not in source and source.count("/") == 1
        if backend == "http" and not source.startswith(("http://", "https://")):
            raise RegistryError(f"{path}: {where}: field 'source' must be an http(s) URL")
        if backend == "diffusers" and not local and not is_hub_id:
            raise RegistryError(
                f"{path}: {where}: field 'source' must be a local directory or a hub id"
            )
        if is_hub_id and not values.get("revision"):
            raise RegistryError(
                f"{path}: {where}: field 'revision' must pin a commit for hub source {source}"
            )
        if values.get("timeout_s", 120) >= max_timeout_s:
            raise RegistryError(
                f"{path}: {where}: field 'timeout_s' must stay below {max_timeout_s} s "
                "(the broker's visibility timeout)"
            )
        if backend == "diffusers" and local:
            candidate = Path(source).expanduser()
            values["source"] = str(candidate if candidate.is_absolute() else models_dir / candidate)
        ident = (values["key"], values["version"])
        if ident in seen:
            raise RegistryError(f"{path}: {where}: key and version repeat an earlier entry")
        seen.add(ident)
        entries.append(ModelEntry(**values))
    return entries


def is_hub_source(entry: ModelEntry) -> bool:
    """A diffusers model whose source is a Hugging Face Hub id rather than a directory."""
    return entry.backend == "diffusers" and not Path(entry.source).is_absolute()


def check_deployable(path: Path, entries: list[ModelEntry]) -> None:
    """Refuse what would make workers fail while battles already draw the model: a hub source not
    pinned to a real commit, or a local directory that is not a saved pipeline.

    ``dev_skip_source_check = true`` on an entry lets it through (development only).
    """
    for entry in entries:
        if entry.dev_skip_source_check or entry.backend != "diffusers":
            continue
        where = f"{path}: model {entry.key}"
        if is_hub_source(entry):
            if entry.revision == _PLACEHOLDER_COMMIT:
                raise RegistryError(
                    f"{where}: field 'revision' is the all-zero placeholder; pin the commit you "
                    "tested (or set dev_skip_source_check = true for development)"
                )
            if not _COMMIT.fullmatch(entry.revision):
                raise RegistryError(
                    f"{where}: field 'revision' must be a full 40-character commit, got "
                    f"{entry.revision!r}: a branch or tag can change under you"
                )
            continue
        directory = Path(entry.source)
        if not directory.is_dir():
            raise RegistryError(f"{where}: field 'source': directory {directory} does not exist")
        if not (directory / "model_index.json").is_file():
            raise RegistryError(
                f"{where}: field 'source': {directory} has no model_index.json "
                "(not a pipeline saved with save_pretrained)"
            )


def pipeline_class_name(entry: ModelEntry) -> str:
    """The diffusers class the entry loads: the named one, else its model_index.json's."""
    if entry.pipeline_class or entry.backend != "diffusers":
        return entry.pipeline_class
    index = Path(entry.source) / "model_index.json"
    try:
        name = json.loads(index.read_text(encoding="utf-8")).get("_class_name", "")
    except (OSError, ValueError):
        return ""
    return name if isinstance(name, str) else ""
