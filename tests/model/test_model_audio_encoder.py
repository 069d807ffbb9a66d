"""The audio projection is sized from the audio encoder's config: a 1024-wide, 24-layer encoder gives the sd15
model a matching projection (built on the meta device), while an encoder of Hallo's shape converts Hallo's
weights unchanged and is recorded in the weights folder."""
from __future__ import annotations

import torch

from hallo_fixture import HALLO_TINY, wav2vec2_sizes, write_config_base
from model.pretrained import main as pretrained_main
from model.presets import get_preset
from model.sizes import component_counts, main as sizes_main, with_audio_encoder
from model.standins import write_audio_encoder
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
    assert pretrained_main([*common, "--to", str(tmp_path / "english")]) == 0
    assert pretrained_main([*common, "--to", str(tmp_path / "hubert_weights"), "--audio-encoder", str(tmp_path / "hubert")]) == 0
    record = read_index(tmp_path / "hubert_weights").audio_encoder
    assert (record["model_type"], record["layers"], record["width"]) == ("hubert", sizes["num_hidden_layers"], sizes["hidden_size"])
    assert read_index(tmp_path / "hubert_weights").wav2vec2 == str((tmp_path / "hubert").resolve())
    assert read_index(tmp_path / "english").audio_encoder == {}  # the config-only base has no weights to record
    english, hubert = load_net(tmp_path / "english").state_dict(), load_net(tmp_path / "hubert_weights").state_dict()
    assert english.keys() == hubert.keys() and all(torch.equal(english[k], hubert[k]) for k in english)
