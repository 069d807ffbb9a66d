"""What the full curation pipeline (with speech and lip-sync) makes of each fixture variant.

examples.fixtures records the outcomes of the face and quality steps; at the default config (no
SyncNet weights here, so lip sync falls back to the weight-free envelope scorer) the speech and
lip-sync steps change one of them:
- `silent`: no speech -> `no_speech`;
- `shifted_5`, `shifted_10` (audio 5 / 10 frames late): the fallback cannot tell them from in-sync
  clips (their lips articulate like real ones), so they are accepted, marked unverified, like all
  talking clips. tests/test_pipeline.py shows a measured shift being corrected or caught.
"""
from __future__ import annotations

from typing import Optional

from curation import reasons
from examples.fixtures import FixtureInfo

SYNC_REJECTS = {"silent": reasons.NO_SPEECH}


def expected(info: FixtureInfo) -> tuple[Optional[str], int]:
    """(reject reason or None, accepted clips) for one fixture."""
    if info.reason is None and info.variant in SYNC_REJECTS:
        return SYNC_REJECTS[info.variant], 0
    return info.reason, info.clips
