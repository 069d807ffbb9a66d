"""The SyncNet backend of the lip-sync step: curation's clips scored by foundation.syncnet.

A clip's face track is its output crops with the face-mesh extent as the face box per frame
(syncnet_python tracks S3FD detections instead; its crop framing and smoothing are applied to
ours). All clips handed over together share the network's batches.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from curation.sync import ClipSignals
from foundation.syncnet import FaceTrack, SyncNetScorer, SyncResult, face_track_crops, landmark_boxes


def clip_face_track(clip: ClipSignals) -> FaceTrack:
    return FaceTrack(face_track_crops(clip.crops(), landmark_boxes(clip.landmarks)), clip.audio)


class ClipSyncNet:
    name = "syncnet"
    default_min_confidence = 3.0  # LatentSync's filter
    verifies = True

    def __init__(self, weights: str | Path, device: Optional[str] = None) -> None:
        self.scorer = SyncNetScorer(weights, None if device in (None, "auto") else device)

    def score_many(self, clips: Sequence[ClipSignals], max_offset: int) -> list[SyncResult]:
        return self.scorer.score([clip_face_track(clip) for clip in clips], max_offset)
