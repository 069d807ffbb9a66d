from pathlib import Path

import pytest

from curation.config import CurationConfig
from foundation.config import ConfigError, describe, load_config


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
