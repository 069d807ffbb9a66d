"""The audio projection is sized from the audio encoder's config: a 1024-wide, 24-layer encoder gives the sd15
model a matching projection (built on the meta device), while an encoder of Hallo's shape converts Hallo's
weights unchanged and is recorded in the weights folder."""
from __future__ import annotations

from pathlib import Path

import torch

from hallo_fixture import HALLO_TINY, wav2vec2_sizes, write_config_base
from model.weights_cli import main as weights_cli
from model.presets import get_preset
from model.sizes import component_counts, main as sizes_main, with_audio_encoder
from examples.standins import write_audio_encoder
from model.weights import load_net, read_index


def test_the_sd15_audio_projection_is_sized_for_a_1024_wide_24_layer_encoder(capsys) -> None:
    sd15 = get_preset("sd15")
    hidden, tokens, token_dim = sd15.audio_hidden, sd15.audio_tokens, sd15.unet["cross_attention_dim"]

    def audio_proj(width: int, layers: int) -> int:  # three linear layers and the LayerNorm of Hallo's AudioProjModel
        inputs = (2 * sd15.audio_window + 1) * layers * width
        return inputs * hidden + hidden + hidden * hidden + hidden + hidden * tokens * token_dim + tokens * token_dim + 2 * token_dim

    large, base = component_counts(with_audio_encoder(sd15, 1024, 24)), component_counts(sd15)
    assert large["audio_proj"] == audio_proj(1024, 24) and base["audio_proj"] == audio_proj(768, 12)
    assert {k: v for k, v in large.items() if k != "audio_proj"} == {k: v for k, v in base.items() if k != "audio_proj"}
    assert sizes_main(["sd15", "--audio-encoder", "1024x24"]) == 0
    assert f"{audio_proj(1024, 24):,d}" in capsys.readouterr().out


def test_an_encoder_of_hallos_shape_converts_hallo_unchanged_and_is_recorded(tmp_path) -> None:
    base = write_config_base(HALLO_TINY, tmp_path / "base")
    sizes = wav2vec2_sizes(HALLO_TINY)
    torch.manual_seed(0)
    write_audio_encoder(tmp_path / "hubert", {**sizes, "num_attention_heads": 1, "intermediate_size": 8,
                                              "conv_dim": [8] * 7, "num_conv_pos_embeddings": 16,
                                              "num_conv_pos_embedding_groups": 1}, "hubert")
    common = ["hallo", "--base", str(base), "--net", str(HALLO_TINY / "net.pth")]
    assert weights_cli([*common, "--to", str(tmp_path / "english")]) == 0
    assert weights_cli([*common, "--to", str(tmp_path / "hubert_weights"), "--audio-encoder", str(tmp_path / "hubert")]) == 0
    record = read_index(tmp_path / "hubert_weights").audio_encoder
    assert (record["model_type"], record["layers"], record["width"]) == ("hubert", sizes["num_hidden_layers"], sizes["hidden_size"])
    assert read_index(tmp_path / "hubert_weights").wav2vec2 == str((tmp_path / "hubert").resolve())
    assert read_index(tmp_path / "english").audio_encoder == {}  # the config-only base has no weights to record
    english, hubert = load_net(tmp_path / "english").state_dict(), load_net(tmp_path / "hubert_weights").state_dict()
    assert english.keys() == hubert.keys() and all(torch.equal(english[k], hubert[k]) for k in english)


def test_fetch_knows_the_mandarin_encoder_and_whisper(tmp_path, monkeypatch) -> None:
    """`fetch --also`: where each extra model lands and which hub files are asked for (the hub itself replaced:
    these machines have no internet; every other base is already there, so only the extras are fetched)."""
    import huggingface_hub
    from huggingface_hub.errors import EntryNotFoundError

    from model.pretrained import base_paths

    base = tmp_path / "base"
    for name, path in base_paths(base).items():
        if name != "wav2vec2":
            (path.parent if path.suffix else path).mkdir(parents=True, exist_ok=True)
            if path.suffix:
                path.write_bytes(b"present")
    asked: list[tuple[str, str, str]] = []

    def fake_download(repo: str, filename: str, local_dir: Path) -> str:
        if filename == "model.safetensors" and repo.startswith("TencentGameMate/"):
            raise EntryNotFoundError("only pytorch_model.bin")  # as that repository ships it
        asked.append((repo, filename, str(Path(local_dir).relative_to(base))))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        return str(Path(local_dir) / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    assert weights_cli(["fetch", "--to", str(base), "--also", "chinese-wav2vec2-base", "--also", "whisper"]) == 0
    assert ("TencentGameMate/chinese-wav2vec2-base", "pytorch_model.bin", "audio_encoders/chinese-wav2vec2-base") in asked
    assert ("TencentGameMate/chinese-wav2vec2-base", "preprocessor_config.json", "audio_encoders/chinese-wav2vec2-base") in asked
    assert ("facebook/wav2vec2-base-960h", "model.safetensors", "wav2vec2") in asked
    assert {(f, d) for r, f, d in asked if r == "openai/whisper-base"} == {
        ("config.json", "whisper"), ("generation_config.json", "whisper"), ("preprocessor_config.json", "whisper"),
        ("model.safetensors", "whisper")}
