from pathlib import Path

import pytest

from curation.config import CurationConfig
from foundation.config import ConfigError, changed_keys, describe, fingerprint, load_config, result_keys


def test_defaults_yaml_and_overrides_layer(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("quality:\n  min_face_px: 128\nclips:\n  max_s: 8\n")
    cfg = load_config(CurationConfig, yaml_file, ["quality.min_face_px=200", "download.proxy=socks5://127.0.0.1:9",
                                                  "quality.min_sharpness=1e2"])
    assert cfg.quality.min_sharpness == 100.0  # YAML 1.1 reads 1e2 as a string; floats accept it
    assert cfg.quality.min_face_px == 200  # --set wins over YAML
    assert cfg.clips.max_s == 8.0 and isinstance(cfg.clips.max_s, float)
    assert cfg.download.proxy == "socks5://127.0.0.1:9"
    assert cfg.media.fps == 25  # untouched default


@pytest.mark.parametrize(
    "override, message",
    [
        ("quality.min_face_pix=3", "unknown config key 'quality.min_face_pix'"),
        ("nosection.x=1", "unknown config key 'nosection'"),
        ("quality.min_face_px=big", "config key 'quality.min_face_px' expects an integer"),
        ("scenes.detector=magic", "config key 'scenes.detector' must be one of"),
        ("clips.min_s=20", "clips.min_s"),
        ("novalue", "must look like key=value"),
    ],
)
def test_bad_keys_and_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CurationConfig, None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(CurationConfig, tmp_path / "nope.yaml")


def test_every_key_is_documented() -> None:
    rows = describe(CurationConfig)
    assert len(rows) > 40
    assert all(help_text for _, _, help_text in rows)


@pytest.mark.parametrize(
    "override, message",
    [
        ("run.max_in_flight=-3", "config key 'run.max_in_flight' must be >= 0, got -3"),
        ("shards.video_crf=99", "config key 'shards.video_crf' must be in [0, 51], got 99"),
        ("quality.min_face_px=-5", "config key 'quality.min_face_px' must be >= 0"),
        ("faces.track_iou=1.5", "config key 'faces.track_iou' must be in [0, 1]"),
    ],
)
def test_out_of_range_values_name_the_key_and_the_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(CurationConfig, overrides=[override])
    assert message in str(err.value)


def test_bounds_apply_to_training_lists_and_numbers() -> None:
    from training.config import TrainConfig

    for override, key in [("optim.betas=[0.9, 1.5]", "optim.betas"), ("run.batch_size=0", "run.batch_size"),
                          ("diffusion.drop_audio=2", "diffusion.drop_audio")]:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(TrainConfig, overrides=[override])


def test_fingerprint_covers_result_keys_only() -> None:
    base = load_config(CurationConfig)
    pacing = load_config(CurationConfig, overrides=["run.max_in_flight=4", "download.sleep_interval_s=2"])
    threshold = load_config(CurationConfig, overrides=["quality.min_face_px=128"])
    assert "run.max_in_flight" not in result_keys(base) and "quality.min_face_px" in result_keys(base)
    assert fingerprint(result_keys(pacing)) == fingerprint(result_keys(base))
    assert fingerprint(result_keys(threshold)) != fingerprint(result_keys(base))
    assert changed_keys(result_keys(base), result_keys(threshold)) == ["quality.min_face_px"]
