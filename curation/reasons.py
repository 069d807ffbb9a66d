"""Stable reject/failure codes recorded in the manifest, and the exception that carries them."""
from __future__ import annotations

from typing import Optional

UNSUPPORTED_SOURCE = "unsupported_source"
DOWNLOAD_FAILED = "download_failed"
TOO_LONG = "too_long"
CORRUPT_MEDIA = "corrupt_media"
NO_VIDEO = "no_video"
NO_AUDIO = "no_audio"
TOO_SHORT = "too_short"
NO_FACE = "no_face"
MULTIPLE_FACES = "multiple_faces"
FACE_TOO_SMALL = "face_too_small"
CROP_OFF_FRAME = "crop_off_frame"
BLURRY = "blurry"
TOO_DARK = "too_dark"
OVEREXPOSED = "overexposed"
EXTREME_POSE = "extreme_pose"
STATIC_PICTURE = "static_picture"
STATIC_FACE = "static_face"
NO_SPEECH = "no_speech"
POOR_AUDIO = "poor_audio"
OTHER_LANGUAGE = "other_language"
OUT_OF_SYNC = "out_of_sync"
DUPLICATE = "duplicate"
INTERNAL_ERROR = "internal_error"
WORKER_CRASHED = "worker_crashed"

# Sources that could not be processed (a re-run with --retry-failed tries them again);
# every other reason means the input was processed and judged unusable.
FAILED = frozenset({"download_failed", "internal_error", "worker_crashed"})

REASONS: dict[str, str] = {
    UNSUPPORTED_SOURCE: "the list entry is neither an http(s) URL nor an existing local file",
    DOWNLOAD_FAILED: "yt-dlp could not fetch the source after all retries (or it exceeded max_filesize_mb)",
    TOO_LONG: "the source is longer than download.max_duration_s",
    CORRUPT_MEDIA: "the file cannot be opened or decoded (truncated, not a media file)",
    NO_VIDEO: "the file has no video stream",
    NO_AUDIO: "the file has no audio stream",
    TOO_SHORT: "the source, or a face segment, is shorter than the minimum length",
    NO_FACE: "no face (or face-mesh landmarks too often missing) in the segment",
    MULTIPLE_FACES: "more than one prominent face in the frame",
    FACE_TOO_SMALL: "the face is smaller than quality.min_face_px",
    CROP_OFF_FRAME: "more of the square crop than quality.max_crop_outside_share lies outside the frame (that part "
                    "would be invented by edge replication: a face too close to the frame for faces.crop_scale)",
    BLURRY: "the face is not sharp enough (quality.min_sharpness)",
    TOO_DARK: "the face is too dark (quality.min_brightness)",
    OVEREXPOSED: "the face is too bright (quality.max_brightness)",
    EXTREME_POSE: "the head turns or tilts beyond quality.max_yaw_deg / max_pitch_deg",
    STATIC_PICTURE: "the picture does not change (a still, a frozen stretch, a slideshow; motion.min_picture_change, "
                    "motion.max_static_s)",
    STATIC_FACE: "the mouth does not move while speech is heard (motion.min_mouth_motion)",
    NO_SPEECH: "too little speech in the clip's audio (speech.min_ratio; silence, music only)",
    POOR_AUDIO: "the speech is buried in noise or music: DNSMOS overall score of the (separated) vocals below "
                "speech.min_dnsmos",
    OTHER_LANGUAGE: "the clip's spoken language (column `language`) is not in speech.languages",
    OUT_OF_SYNC: "lips and speech do not match: SyncNet confidence below sync.min_confidence or its offset beyond "
                 "sync.max_abs_offset (without SyncNet weights: only a confident offset beyond sync.max_abs_offset)",
    DUPLICATE: "the same media bytes (or, for URLs, the same site's video id) as a source listed earlier; "
               "the detail names the kept source",
    INTERNAL_ERROR: "an unexpected error in our code; the detail column holds the exception",
    WORKER_CRASHED: "the worker process died (OOM, kill) more often than run.max_retries",
}


class Rejected(Exception):
    """A deterministic, recordable outcome: the input is unusable for a named reason."""

    def __init__(self, reason: str, detail: str = "", metrics: Optional[dict[str, float | bool]] = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason code {reason!r}")
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.metrics = metrics or {}  # manifest columns measured before the reject (e.g. speech_ratio)
