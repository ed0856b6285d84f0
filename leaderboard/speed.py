"""Speed: each model's median generation time, from the compute time its jobs recorded.

Only freshly made battle and pool images count: they use the model's own steps and size, so
the times compare like with like (a chat turn may ask for fifty steps or four images, a refine
for a fraction of them, and a reused image took no time). The median is taken on the hardware
that made most of the model's recent images, which the page names next to the time.
"""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.core.cache import cache

from generation.models import Generation

# The newest images of each model the median is taken over.
SAMPLE = 500
CACHE_SECONDS = 60
# What a job's device said where its hardware was not recorded by name.
DEVICE_LABELS = {
    "cuda": "a CUDA GPU (model not recorded)",
    "cpu": "CPU (model not recorded)",
    "http": "a remote HTTP endpoint (not reported)",
}


@dataclass(frozen=True)
class Speed:
    """A model's median compute time on the hardware named, from ``images`` images."""

    median_s: float
    images: int
    hardware: str
    others: tuple[str, ...] = ()  # other hardware it also ran on, left out of the median


def hardware_label(*, hardware: str, device: str) -> str:
    """The hardware by name, else what the device says, else "unknown hardware"."""
    return hardware or DEVICE_LABELS.get(device, device or "unknown hardware")


def summarise(samples: Sequence[tuple[int, str]]) -> Speed | None:
    """The median time (ms in, seconds out) on the hardware most samples ran on; ties of
    hardware go to the one seen first (the newest). None without samples."""
    if not samples:
        return None
    seen = Counter(label for _, label in samples)
    order = {label: i for i, (_, label) in reversed(list(enumerate(samples)))}
    hardware = min(seen, key=lambda label: (-seen[label], order[label]))
    times = [ms for ms, label in samples if label == hardware]
    others = tuple(sorted(label for label in seen if label != hardware))
    return Speed(
        median_s=statistics.median(times) / 1000.0,
        images=len(times),
        hardware=hardware,
        others=others,
    )


def recent_samples(model_id: int) -> list[tuple[int, str]]:
    """(compute ms, hardware label) of the model's newest freshly made battle and pool images."""
    rows = (
        Generation.objects.filter(
            model_id=model_id,
            status=Generation.Status.DONE,
            purpose__in=[Generation.Purpose.BATTLE, Generation.Purpose.POOL],
            compute_ms__isnull=False,
            cached_from=None,
            source_image=None,
        )
        .order_by("-finished_at", "-pk")
        .values_list("compute_ms", "hardware", "device")[:SAMPLE]
    )
    return [(ms, hardware_label(hardware=hw, device=dev)) for ms, hw, dev in rows if ms is not None]


def median_speeds(model_ids: Iterable[int]) -> dict[int, Speed]:
    """Each model's Speed (models without a timed image are left out), cached a minute."""
    ids = sorted(set(model_ids))
    key = "leaderboard-speed:" + hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest()
    found: dict[int, Speed] | None = cache.get(key)
    if found is None:
        found = {}
        for pk in ids:
            speed = summarise(recent_samples(pk))
            if speed is not None:
                found[pk] = speed
        cache.set(key, found, timeout=CACHE_SECONDS)
    return found
