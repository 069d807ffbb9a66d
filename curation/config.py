"""Every curation threshold, with its default and meaning (the single source for the README table)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

from foundation.config import ConfigError, opt, section
from foundation.faces import FacesConfig


@dataclass
class DownloadConfig:
    max_height: int = opt(720, "highest video height yt-dlp may pick (the format always carries audio)", low=144)
    retries: int = opt(3, "download attempts per source before `download_failed`", low=1)
    backoff_s: float = opt(5.0, "first retry delay; doubles after each failed attempt", low=0)
    rate_limit: Optional[str] = opt(None, "yt-dlp rate limit, e.g. '2M' (bytes/s); null = unlimited", results=False)
    sleep_interval_s: float = opt(0.0, "pause before each download (politeness towards the site)", low=0, results=False)
    cookies_file: Optional[str] = opt(None, "Netscape cookies file passed to yt-dlp (for sites that need a login)", results=False)
    proxy: Optional[str] = opt(None, "proxy URL for yt-dlp, e.g. socks5://127.0.0.1:1080", results=False)
    max_filesize_mb: float = opt(2048.0, "skip sources larger than this (`download_failed`)", low=0)
    max_duration_s: float = opt(3600.0, "skip sources longer than this (`too_long`)", low=0)
    socket_timeout_s: float = opt(30.0, "network timeout per request", low=1, results=False)


@dataclass
class MediaConfig:
    fps: int = opt(25, "constant frame rate every clip is normalised to", low=1)
    sample_rate: int = opt(16000, "audio sample rate (mono) every clip is normalised to", low=8000)
    min_duration_s: float = opt(2.0, "sources shorter than this are rejected `too_short`", low=0)
    analysis_short_side: int = opt(360, "frames are downscaled to this short side for scene and face analysis", low=64)
    max_corrupt_share: float = opt(0.05, "undecodable packets are skipped (audio zero-filled, video holding the previous "
                                          "frame, noted in `detail`); past this share of the source's duration in one "
                                          "stream it is `corrupt_media`", low=0, high=1)
    bar_luma_max: float = opt(24.0, "black bars: edge rows/columns whose mean brightness (0-255, brightest of the "
                                    "sampled frames) stays at or below this are cut off before analysis", low=0, high=255)
    bar_min_share: float = opt(0.02, "black bars thinner than this share of the frame side are kept (encoder edges)",
                               low=0, high=0.5)
    bar_samples: int = opt(5, "frames sampled across the source to find black bars; 0 = keep every pixel", low=0)


@dataclass
class ScenesConfig:
    detector: Literal["adaptive", "content"] = opt("adaptive", "PySceneDetect detector")
    adaptive_threshold: float = opt(3.0, "AdaptiveDetector adaptive_threshold", low=0)
    content_threshold: float = opt(27.0, "ContentDetector threshold", low=0)
    min_scene_len_frames: int = opt(12, "shortest shot PySceneDetect reports", low=1)


@dataclass
class QualityConfig:
    min_face_px: int = opt(96, "faces smaller than this (median side in display pixels: upright, square, full "
                               "resolution) are `face_too_small`", low=0)
    min_sharpness: float = opt(20.0, "median Laplacian variance of the face at 128 px below this is `blurry`", low=0)
    min_brightness: float = opt(40.0, "mean face luma (0-255) below this is `too_dark`", low=0, high=255)
    max_brightness: float = opt(235.0, "mean face luma above this is `overexposed`", low=0, high=255)
    max_yaw_deg: float = opt(35.0, "median |yaw| above this is `extreme_pose`", low=0, high=180)
    max_pitch_deg: float = opt(30.0, "median |pitch| above this is `extreme_pose`", low=0, high=180)
    max_crop_outside_share: float = opt(0.1, "mean share of the square crop's area outside the frame (edge-replicated "
                                              "in the stored clip) above which a clip is `crop_off_frame`", low=0, high=1)
    min_landmark_presence: float = opt(0.9, "share of a clip's frames that must have face-mesh landmarks (`no_face` otherwise)", low=0, high=1)


@dataclass
class ClipsConfig:
    min_s: float = opt(2.0, "shortest clip kept; shorter face segments are `too_short`", low=0)
    max_s: float = opt(10.0, "longer segments are split into clips of at most this length", low=0)


@dataclass
class ScreenConfig:
    min_speech_ratio: float = opt(0.25, "before any video decode, silero-vad runs on the whole source audio (the mixture): "
                                        "only stretches within clips.max_s - clips.min_s of a clips.min_s window with at "
                                        "least this share of voiced audio are analysed (the rest are `no_speech` rows); "
                                        "a source with no such window is `no_speech`", low=0, high=1)
    face_probe_every_s: float = opt(1.0, "before the full-rate analysis, one analysis frame this often is searched for a "
                                         "face; a source where none has one is `no_face`", low=0.04)


@dataclass
class MotionConfig:
    min_picture_change: float = opt(0.2, "a frame whose mean absolute grey difference (0-255, at 64 px wide) from the one "
                                         "before is below this shows the same picture; a clip whose mean is below it is "
                                         "`static_picture`", low=0)
    max_static_s: float = opt(0.5, "a stretch of unchanged frames longer than this is cut out as `static_picture`, "
                                   "splitting the clip as a shot cut does", low=0)
    min_mouth_motion: float = opt(0.012, "a clip whose mouth opening (inner-lip gap / outer eye-corner distance, less its "
                                         "1 s moving average) varies less than this (standard deviation over the frames "
                                         "with speech) is `static_face`",
                                  low=0)


@dataclass
class SpeechConfig:
    min_ratio: float = opt(0.5, "clips whose share of voiced audio (silero-vad) is below this are `no_speech`", low=0, high=1)
    vad_threshold: float = opt(0.5, "silero-vad speech probability above which a 32 ms window counts as speech", low=0, high=1)
    separation: Literal["auto", "on", "off"] = opt(
        "auto", "vocal separation before speech detection, lip sync, DNSMOS and the audio features: 'on' (audio-separator "
                "running MDX-Net Kim_Vocal_2, as Hallo; its files are required), 'off', or 'auto' (on when the model is "
                "found, else off with a warning)")
    separator_model: Optional[str] = opt(None, "MDX-Net model file audio-separator runs, its model-data JSON files beside "
                                               "it; null = BASE/uvr/Kim_Vocal_2.onnx (pretrained_dir)")
    separator: Optional[str] = opt(None, "another vocal separator as 'module:factory' (docs/curation.md), used instead of "
                                         "the MDX model while separation is not off; null = the MDX model")
    separator_args: dict[str, Any] = opt({}, "keyword arguments for the separator factory, e.g. {model_dir: /models/uvr}")
    separate_only_speech: bool = opt(True, "separate only clips whose mixture already holds speech.min_ratio of speech "
                                           "(silero-vad), the others are `no_speech` unseparated (docs/curation.md: where "
                                           "this changes a verdict)")
    min_dnsmos: float = opt(2.0, "clips with speech whose DNSMOS overall score (of the vocals; 1 bad .. 5 excellent) is "
                                 "below this are `poor_audio` (speech over noise or music); 0 = not scored", low=0, high=5)
    language_model: Optional[str] = opt(None, "multilingual Whisper folder or hub id that identifies each clip's spoken "
                                              "language (curation/language.py); null = BASE/whisper when it exists, "
                                              "else no language is recorded")
    languages: list[str] = opt([], "keep only clips in these languages (Whisper codes: zh, en, ja, ...), the others are "
                                   "`other_language`; [] = every language (needs the language model when set)")


@dataclass
class SyncConfig:
    backend: Literal["auto", "syncnet", "envelope"] = opt(
        "auto", "lip-sync scorer: 'syncnet' (needs its weights), 'envelope' (weight-free fallback: mouth opening vs "
                "speech loudness, cannot confirm sync, keeps clips unverified) or 'auto' (syncnet when its weights "
                "are found, else envelope with a warning)")
    weights: Optional[str] = opt(None, "syncnet_python-format SyncNet weights file (syncnet_v2.model); "
                                       "null = BASE/syncnet/syncnet_v2.model (pretrained_dir)")
    device: str = opt("auto", "torch device for SyncNet: auto (cuda when torch sees one), cpu, cuda, cuda:1, ...", results=False)
    batch_frames: int = opt(1000, "SyncNet scores a source's clips together, in network batches that span clips, "
                                  "up to this many frames at a time (their crops stay in memory meanwhile, about "
                                  "0.8 MB a frame at 512 px)", low=1, results=False)
    max_offset: int = opt(15, "audio-video offsets searched, in frames, each way (+-0.6 s at 25 fps)", low=1)
    min_confidence: Optional[float] = opt(
        None, "confidence a clip needs (syncnet: to pass; envelope: to be trusted at all); null = the backend's "
              "default (syncnet 3.0, envelope 4.5)")
    max_abs_offset: int = opt(6, "clips whose detected offset exceeds this many frames either way are `out_of_sync` "
                                 "(envelope: only when confident); smaller trusted offsets are corrected by shifting "
                                 "the audio (LatentSync: 6)", low=0)


@dataclass
class AnnotationsConfig:
    enabled: bool = opt(True, "write the training annotations (masks, face embedding, audio features) into every sample")
    wav2vec2_dir: Optional[str] = opt(None, "audio encoder folder or hub id, any of the wav2vec2 family (wav2vec2, "
                                            "HuBERT, data2vec-audio, WavLM; facebook/wav2vec2-base-960h layout: model + "
                                            "preprocessor_config.json), e.g. TencentGameMate/chinese-wav2vec2-base for "
                                            "Mandarin; null = BASE/wav2vec2")
    encoder: dict[str, Any] = opt({}, "filled in at start-up, not by hand: the record of wav2vec2_dir's encoder (name, "
                                      "sha256 of its weights, layers, width), so the results fingerprint changes with "
                                      "the weights and every sample names its encoder")
    insightface_dir: Optional[str] = opt(
        None, "folder (or hub id) with the insightface detector and ArcFace .onnx files, antelopev2 or buffalo_l; "
              "null = BASE/insightface/models")
    soft_mask_size: int = opt(64, "side of the soft lip / face / pose masks (Hallo: 64)", low=8)


@dataclass
class ShardsConfig:
    max_samples: int = opt(200, "samples per shard before a new one starts", low=1)
    max_mb: float = opt(1024.0, "shard size before a new one starts", low=1)
    video_crf: int = opt(18, "H.264 quality of the stored clips (lower = better, larger)", low=0, high=51)


@dataclass
class ReviewConfig:
    enabled: bool = opt(True, "capture preview strips while analysing and write DIR/review/index.html after each run "
                              "(see 'Review page')", results=False)
    preview_every: int = opt(4, "a preview for the 1st, (N+1)th, (2N+1)th, ... candidate clip of each reason (and of "
                                "the accepted ones) within a source; 1 = every clip", low=1, results=False)
    preview_frames: int = opt(4, "frames side by side in one preview strip, spread over the clip", low=1, high=16,
                              results=False)
    preview_px: int = opt(144, "short side of each preview frame in pixels", low=32, high=720, results=False)
    page_clips: int = opt(24, "previews shown per section of the page (spread over sources)", low=0, results=False)
    page_rows: int = opt(200, "manifest rows listed per section of the page (the manifest holds all)", low=1,
                         results=False)


@dataclass
class RunConfig:
    cpus_per_task: float = opt(1.0, "CPUs Ray reserves for one source task", low=0, results=False)
    max_in_flight: int = opt(0, "source tasks submitted at once; 0 = 2 x cluster CPUs", low=0, results=False)
    max_retries: int = opt(2, "Ray retries of a task whose worker crashed (deterministic errors are recorded, not retried)", low=0, results=False)
    gpus_per_task: float = opt(0.0, "GPUs Ray reserves for one source task (fractions share a GPU); > 0 sends source tasks "
                                    "to GPU nodes, where SyncNet runs on CUDA", low=0, results=False)
    resources: dict[str, float] = opt({}, "custom Ray resources one source task needs, e.g. {curation: 1} keeps tasks on "
                                          "cluster.yaml's CPU pool", results=False)
    max_in_flight_per_domain: int = opt(16, "sources from one web host in flight at once, cluster-wide (each starts with "
                                            "its download, so this caps parallel downloads from a site); 0 = unlimited; "
                                            "local files are never limited", low=0, results=False)
    progress_every_s: float = opt(60.0, "seconds between a long source's progress lines (video analysed, ETA) in the log",
                                  low=1, results=False)


@dataclass
class CurationConfig:
    pretrained_dir: str = opt("pretrained", "base folder of `hallo-weights fetch` (BASE): the annotation "
                                            "model folders left unset and the SyncNet weights are looked up in it")
    download: DownloadConfig = section(DownloadConfig, "yt-dlp download")
    media: MediaConfig = section(MediaConfig, "probe and normalisation")
    scenes: ScenesConfig = section(ScenesConfig, "shot cuts")
    faces: FacesConfig = section(FacesConfig, "face detection, tracking and cropping")
    quality: QualityConfig = section(QualityConfig, "quality filters")
    clips: ClipsConfig = section(ClipsConfig, "clip lengths")
    screen: ScreenConfig = section(ScreenConfig, "cheap checks before the full analysis")
    motion: MotionConfig = section(MotionConfig, "picture and face motion")
    speech: SpeechConfig = section(SpeechConfig, "speech presence and vocal separation")
    sync: SyncConfig = section(SyncConfig, "lip-sync scoring and filtering")
    annotations: AnnotationsConfig = section(AnnotationsConfig, "training annotations per sample")
    shards: ShardsConfig = section(ShardsConfig, "WebDataset output")
    review: ReviewConfig = section(ReviewConfig, "previews and the review page")
    run: RunConfig = section(RunConfig, "Ray scheduling")

    def validate(self) -> None:
        if self.clips.min_s <= 0 or self.clips.max_s < self.clips.min_s:
            raise ConfigError("config keys 'clips.min_s'/'clips.max_s' need 0 < min_s <= max_s")
        if not 0 < self.faces.second_face_ratio <= 1:
            raise ConfigError("config key 'faces.second_face_ratio' must be in (0, 1]")
        if self.faces.output_size < 64 or self.faces.output_size % 8:
            raise ConfigError("config key 'faces.output_size' must be a multiple of 8, at least 64")
        if 16000 % self.media.fps:
            raise ConfigError("config key 'media.fps' must divide 16000 (a whole number of audio samples per frame); Hallo uses 25")
        if self.sync.backend != "envelope" and self.media.fps != 25:
            raise ConfigError("config key 'media.fps' must be 25 unless sync.backend=envelope (SyncNet's MFCC windows "
                              "assume it; auto picks SyncNet when its weights exist)")
        if self.media.sample_rate != 16000:
            raise ConfigError("config key 'media.sample_rate' must be 16000: silero-vad, SyncNet and wav2vec2 expect 16 kHz")
        if self.sync.max_abs_offset > self.sync.max_offset:  # each alone is range-checked by its opt()
            raise ConfigError("config keys 'sync.max_offset'/'sync.max_abs_offset' need max_abs_offset <= max_offset")
        if {"CPU", "GPU"} & set(self.run.resources) or not all(
                isinstance(v, (int, float)) and v >= 0 for v in self.run.resources.values()):
            raise ConfigError("config key 'run.resources' takes custom resources with amounts >= 0 "
                              "(CPUs and GPUs have run.cpus_per_task / run.gpus_per_task)")
