"""The model registry: a TOML file that lists every model the arena may use.

Validation names the file, the model and the field, so a typo fails at ``sync_models`` rather
than in a worker an hour later.
"""

from __future__ import annotations

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
}
REQUIRED = ("key", "display_name", "source")
_SIZE = re.compile(r"[1-9][0-9]{1,4}x[1-9][0-9]{1,4}")
BACKENDS = ("diffusers", "http")
DTYPES = ("float32", "float16", "bfloat16")


# The image-to-image pipeline made from each text-to-image pipeline's loaded components, for
# direct chat's "refine". A family missing here has none in diffusers, so refine is not offered.
IMAGE_TO_IMAGE = {
    "StableDiffusionPipeline": "StableDiffusionImg2ImgPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusion3Pipeline": "StableDiffusion3Img2ImgPipeline",
    "FluxPipeline": "FluxImg2ImgPipeline",
    "QwenImagePipeline": "QwenImageImg2ImgPipeline",
}


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
