"""Cost and effect of the audio steps: vocal separation (audio-separator, MDX-Net) and DNSMOS.

    python -m benchmarks.separation [--model BASE/uvr/Kim_Vocal_2.onnx]

Prints, for every bundled utterance (examples/assets) clean, with white noise and over a synthesized
chord bed (examples.fixtures.chord_bed), the DNSMOS scores of the mixture and of what the separator
makes of it, then the wall and CPU seconds each step costs per second of audio. Without --model it
runs the stand-in of `python -m examples.standins` (a band-pass in Kim_Vocal_2's contract: its
cost is audio-separator's STFT, chunking and ONNX plumbing, not Kim_Vocal_2's network).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks.common import Measured, measure
from examples.fixtures import ASSETS, SPEECH_FILES, chord_bed, with_background
from curation.speech import dnsmos
from foundation.vocals import MODEL_FILE, MdxVocals

CONDITIONS = (("clean", None, None), ("noise 20 dB", "noise", 20.0), ("noise 10 dB", "noise", 10.0),
              ("noise 5 dB", "noise", 5.0), ("chords 10 dB", "chords", 10.0), ("chords 0 dB", "chords", 0.0))


def conditions(speech: np.ndarray) -> dict[str, np.ndarray]:
    noise = np.random.default_rng(0).standard_normal(speech.size).astype(np.float32)
    beds = {"noise": noise, "chords": chord_bed(speech.size)}
    return {name: speech if kind is None else with_background(speech, beds[kind], snr) for name, kind, snr in CONDITIONS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="MDX-Net model with its model data beside it (default: the stand-in)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from examples.standins import write_vocal_separator

            write_vocal_separator(Path(tmp))
            model = Path(tmp) / MODEL_FILE
        separator = MdxVocals(model)
        sep_cost, mos_cost, seconds = Measured(), Measured(), 0.0
        print("| utterance | condition | mixture OVRL / SIG / BAK | separated OVRL / SIG / BAK |")
        print("|---|---|---|---|")
        for name in SPEECH_FILES:
            speech, rate = sf.read(ASSETS / name, dtype="float32")
            speech = 0.5 * speech / np.abs(speech).max()
            for condition, audio in conditions(speech).items():
                with measure() as m:
                    vocals = separator(audio, rate)
                sep_cost.wall_s, sep_cost.cpu_s = sep_cost.wall_s + m.wall_s, sep_cost.cpu_s + m.cpu_s
                with measure() as m:
                    mixed = dnsmos(audio, rate)
                mos_cost.wall_s, mos_cost.cpu_s = mos_cost.wall_s + m.wall_s, mos_cost.cpu_s + m.cpu_s
                separated = dnsmos(vocals, rate)
                seconds += audio.size / rate
                cells = [" / ".join(f"{s[k]:.2f}" for k in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"))
                         for s in (mixed, separated)]
                print(f"| {name} | {condition} | {cells[0]} | {cells[1]} |")
        print(f"\nseparation ({model.name}): {sep_cost.wall_s / seconds:.3f} s wall, {sep_cost.cpu_s / seconds:.3f} s CPU "
              f"per second of audio; DNSMOS: {mos_cost.wall_s / seconds:.3f} s wall, {mos_cost.cpu_s / seconds:.3f} s CPU "
              f"(over {seconds:.0f} s of audio)")


if __name__ == "__main__":
    main()
