"""Turn face spans into candidate clips of bounded length, each with its metrics and verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from curation.config import ClipsConfig


@dataclass
class Candidate:
    clip_id: str
    start: int  # frame index, inclusive
    end: int  # frame index, exclusive
    reason: Optional[str]  # None = accepted
    metrics: dict[str, float] = field(default_factory=dict)
    span_offset: int = 0  # where the clip starts inside its face span (to slice per-frame arrays)
    detail: Optional[str] = None  # the rejected metric's value and threshold
    sync_backend: Optional[str] = None  # lip-sync scorer that judged the clip (None: it never got there)
    sync_verified: Optional[bool] = None  # that scorer confirmed the sync (False: kept unverified, or rejected)
    vocals_separated: Optional[bool] = None  # the speech steps heard separated vocals (None: it never got there)
    language: Optional[str] = None  # spoken language (curation.language), its probability in metrics language_prob


def clip_id(source_id: str, start: int, end: int) -> str:
    """Stable id, valid as a WebDataset key (no dots)."""
    return f"{source_id}_{start:07d}_{end:07d}"


def split_range(start: int, end: int, fps: int, cfg: ClipsConfig) -> list[tuple[int, int]]:
    """Split [start, end) into near-equal pieces no longer than max_s; a range shorter than min_s stays whole."""
    length = end - start
    max_len = int(round(cfg.max_s * fps))
    pieces = max(1, math.ceil(length / max_len))
    bounds = np.linspace(start, end, pieces + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds, bounds[1:])]


def too_short(start: int, end: int, fps: int, cfg: ClipsConfig) -> bool:
    return (end - start) < int(round(cfg.min_s * fps))
