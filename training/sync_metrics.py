"""Lip-sync metrics of the validation videos, logged as TensorBoard scalars `validation/sync_c`
(LSE-C) and `validation/sync_d` (LSE-D) whenever SyncNet's weights are in the base folder
(model.pretrained_dir/syncnet/syncnet_v2.model, from `hallo-weights fetch`)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from foundation.syncnet import SyncNetScorer, weights_in
from model.evaluate import evaluate_video
from training.config import TrainConfig

log = logging.getLogger(__name__)


def validation_scorer(cfg: TrainConfig) -> Optional[SyncNetScorer]:
    """SyncNet for the validation videos, or None (and a note in the log) without its weights."""
    path = weights_in(cfg.model.pretrained_folder())
    if not path.is_file():
        log.info("no SyncNet weights at %s: validation logs no lip-sync metrics", path)
        return None
    return SyncNetScorer(path)


def log_sync_metrics(scalars: Any, video: Path, scorer: SyncNetScorer, step: int) -> None:
    """Score one validation video and add its LSE-C / LSE-D to the TensorBoard writer."""
    try:
        metrics = evaluate_video(video, scorer)
    except ValueError as err:  # e.g. a clip of 5 frames or fewer: SyncNet has no window to score
        log.warning("no lip-sync metrics for %s: %s", video, err)
        return
    scalars.add_scalar("validation/sync_c", metrics.lse_c, step)
    scalars.add_scalar("validation/sync_d", metrics.lse_d, step)
    log.info("validation lip sync at step %d: LSE-C %.3f LSE-D %.3f offset %+d (face track: %s)", step,
             metrics.lse_c, metrics.lse_d, metrics.offset, metrics.face_track)
