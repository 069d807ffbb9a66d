"""Training annotations: model folders checked at start-up, models loaded once, and the entries of a
clip (masks, identity embedding, wav2vec2 features) with the shapes the schema promises."""
from pathlib import Path

import numpy as np
import pytest

from foundation import schema
from curation.annotations import Annotator, check_model_dirs, pin_model_dirs
from curation.config import AnnotationsConfig, CurationConfig
from examples.fixtures import speech_track
from curation.speech_sync_annotate import clip_models, preflight
from foundation.masks import FACE_OVAL_IDS, LIP_IDS
from foundation.config import ConfigError, load_config

SIZE = 512


@pytest.fixture(scope="module")
def annotations_cfg(tiny_pretrained) -> AnnotationsConfig:
    return AnnotationsConfig(wav2vec2_dir=str(tiny_pretrained / "wav2vec2"),
                             insightface_dir=str(tiny_pretrained / "insightface" / "models"))


def test_model_folders_are_checked_with_the_key_named(annotations_cfg, tmp_path: Path) -> None:
    check_model_dirs(annotations_cfg, tmp_path / "no_base")
    with pytest.raises(ConfigError, match="'annotations.wav2vec2_dir' is not set and pretrained_dir has no"):
        check_model_dirs(AnnotationsConfig(), tmp_path / "no_base")
    with pytest.raises(ConfigError, match=r"'annotations.insightface_dir': .*nowhere does not exist"):
        check_model_dirs(AnnotationsConfig(wav2vec2_dir=annotations_cfg.wav2vec2_dir,
                                           insightface_dir=str(tmp_path / "nowhere")), tmp_path)
    with pytest.raises(ConfigError, match=r"no \*\.onnx"):
        check_model_dirs(AnnotationsConfig(wav2vec2_dir=annotations_cfg.wav2vec2_dir, insightface_dir=str(tmp_path)), tmp_path)


def test_preflight_fails_before_any_work_on_each_missing_piece(annotation_overrides, tmp_path: Path) -> None:
    preflight(load_config(CurationConfig, None, annotation_overrides))
    preflight(load_config(CurationConfig, None, ["annotations.enabled=false"]))
    with pytest.raises(ConfigError, match="annotations.wav2vec2_dir"):
        preflight(load_config(CurationConfig, None, [f"pretrained_dir={tmp_path / 'no_base'}"]))
    no_weights = load_config(CurationConfig, None, [*annotation_overrides, "sync.backend=syncnet",
                                                    f"sync.weights={tmp_path / 'syncnet_v2.model'}"])
    with pytest.raises(ConfigError, match="sync.weights"):
        preflight(no_weights)
    with pytest.raises(ConfigError, match="speech.separator"):
        preflight(load_config(CurationConfig, None, [*annotation_overrides, "speech.separator=no_such_module:make"]))


def test_models_load_once_per_process_and_config(annotation_overrides, monkeypatch) -> None:
    built = []
    original = Annotator.__init__

    def counting_init(self, cfg, base) -> None:
        built.append(cfg)
        original(self, cfg, base)

    monkeypatch.setattr(Annotator, "__init__", counting_init)
    cfg = load_config(CurationConfig, None, [*annotation_overrides, "speech.min_ratio=0.4"])
    first = clip_models(cfg)
    assert clip_models(load_config(CurationConfig, None, [*annotation_overrides, "speech.min_ratio=0.4"])) is first
    assert len(built) == 1
    cfg.annotations.soft_mask_size = 32  # another model setting: built again
    assert clip_models(cfg) is not first and len(built) == 2


def _face_landmarks(frames: int) -> np.ndarray:
    """(frames, 478, 2): a face oval around (256, 250) and lips around (256, 330), nodding a little."""
    points = np.full((frames, 478, 2), (256.0, 250.0))
    for ids, centre, radius in ((FACE_OVAL_IDS, (256, 250), (90, 120)), (LIP_IDS, (256, 330), (35, 12))):
        angle = np.linspace(0, 2 * np.pi, len(ids), endpoint=False)
        ring = np.stack([centre[0] + radius[0] * np.cos(angle), centre[1] + radius[1] * np.sin(angle)], 1)
        points[:, list(ids)] = ring
    return points + np.linspace(0, 4, frames)[:, None, None] * np.array([0.0, 1.0])


def test_a_clip_gets_masks_identity_and_frame_aligned_audio_features(annotations_cfg) -> None:
    frames = 30
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(frames)]
    entries, found = Annotator(annotations_cfg, "pretrained").annotate(crops, _face_landmarks(frames),
                                                         speech_track(frames / 25), fps=25)
    assert set(entries) == set(schema.ANNOTATION_KEYS)

    features = schema.decode_npy(entries[schema.KEY_AUDIO_FEATURES])
    assert features.dtype == np.float16 and features.shape[0] == frames and features.ndim == 3
    embedding = schema.decode_npy(entries[schema.KEY_FACE_EMB])
    assert embedding.shape == (512,) and embedding.dtype == np.float32
    assert not found and not embedding.any()  # noise has no face: the zero (unconditional) embedding

    face = schema.decode_png(entries[schema.KEY_FACE_MASK])
    assert face.shape == (SIZE, SIZE) and set(np.unique(face)) == {0, 255}
    assert face[250, 256] == 255 and face[10, 10] == 0 and face[250, 500] == 0
    pose, face_minus_lip, lip = schema.decode_npy(entries[schema.KEY_REGION_MASKS]).astype(np.float32)
    assert pose.shape == (64, 64)
    assert lip[331 // 8, 32] > 0.9 and lip[200 // 8, 32] < 0.1  # lip mask on the mouth, not the eyes
    assert face_minus_lip[200 // 8, 32] > 0.9 and face_minus_lip[331 // 8, 32] < 0.2
    assert pose[250 // 8, 32] < 0.1 and pose[2, 2] > 0.9


def test_audio_feature_frames_follow_the_clip_length(annotations_cfg) -> None:
    annotator = Annotator(annotations_cfg, "pretrained")
    for frames in (50, 51, 63):
        features = annotator.audio_features(speech_track(frames / 25), fps=25, frames=frames)
        assert features.shape[0] == frames
    with pytest.raises(ValueError, match="feature frames"):
        annotator.audio_features(speech_track(2.0), fps=25, frames=49)



def test_model_folders_default_to_the_pretrained_folder(tiny_pretrained, tmp_path: Path, monkeypatch) -> None:
    """`curation.run` with no model flags finds ./pretrained (what `hallo-weights fetch --to pretrained`
    writes) and hands Ray workers absolute paths, since their working directory differs."""
    import curation.run
    import orchestration.curation_job
    import orchestration.ray_setup

    seen = []
    monkeypatch.setattr(orchestration.ray_setup, "init_ray", lambda *args: None)
    from curation.manifest import summarize

    monkeypatch.setattr(orchestration.curation_job, "run_curation",
                        lambda sources, unsupported, out, cfg, *rest, **kw: seen.append(cfg) or summarize([], 0.0))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pretrained").symlink_to(tiny_pretrained)
    (tmp_path / "list.txt").write_text("clip.mp4\n")
    assert curation.run.main(["--source", "list.txt", "--allow-empty"]) == 0  # the stub run curates nothing
    annotations = seen[0].annotations
    assert annotations.wav2vec2_dir == str(tiny_pretrained.resolve() / "wav2vec2")
    assert annotations.insightface_dir == str(tiny_pretrained.resolve() / "insightface" / "models")


def test_model_folders_take_hub_ids_from_the_cache(tiny_pretrained, tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    from hubcache import add_to_cache

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    add_to_cache(tmp_path / "hub", "facebook/wav2vec2-base-960h", tiny_pretrained / "wav2vec2")
    add_to_cache(tmp_path / "hub", "someone/antelopev2", tiny_pretrained / "insightface" / "models", "models")
    cfg = AnnotationsConfig(wav2vec2_dir="facebook/wav2vec2-base-960h", insightface_dir="someone/antelopev2/models")
    pinned = pin_model_dirs(cfg, tmp_path)
    # ids stay ids: each Ray worker resolves them in its own cache; the encoder's record names the cached commit
    assert (pinned.wav2vec2_dir, pinned.insightface_dir) == (cfg.wav2vec2_dir, cfg.insightface_dir)
    assert pinned.encoder["name"] == "facebook/wav2vec2-base-960h" and len(pinned.encoder["revision"]) == 40
    annotator = Annotator(cfg, tmp_path)
    assert annotator.audio_features(np.zeros(16000, np.float32), 25, 25).shape[0] == 25
