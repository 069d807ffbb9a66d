"""What the full curation pipeline (with speech and lip-sync) makes of each fixture variant.

curation.fixtures records the outcomes of the face and quality steps; the speech and lip-sync steps
change three of them at the default config:
- `silent`: no speech -> `no_speech`;
- `shifted_5`: audio 5 frames late, within sync.max_abs_offset (6) -> accepted, offset 5 corrected;
- `shifted_10`: audio 10 frames late, beyond it -> `out_of_sync` (offset 10 recorded).
"""
from __future__ import annotations

from typing import Optional

from curation import reasons
from curation.fixtures import FixtureInfo

SYNC_REJECTS = {"silent": reasons.NO_SPEECH, "shifted_10": reasons.OUT_OF_SYNC}


def expected(info: FixtureInfo) -> tuple[Optional[str], int]:
    """(reject reason or None, accepted clips) for one fixture."""
    if info.reason is None and info.variant in SYNC_REJECTS:
        return SYNC_REJECTS[info.variant], 0
    return info.reason, info.clips
