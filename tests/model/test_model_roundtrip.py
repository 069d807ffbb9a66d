"""save_pretrained / from_pretrained round trips are exact for every trainable module."""
from __future__ import annotations

import torch

from model.net import COMPONENT_CLASSES, COMPONENTS, HalloNet


def test_every_component_round_trips_exactly(tiny_net, batch, tmp_path):
    parts = tiny_net.parts()
    loaded = {}
    for name in COMPONENTS:
        module = getattr(parts, name)
        module.save_pretrained(tmp_path / name)
        loaded[name] = COMPONENT_CLASSES[name].from_pretrained(tmp_path / name)
        original, restored = module.state_dict(), loaded[name].state_dict()
        assert original.keys() == restored.keys(), name
        for key in original:
            assert torch.equal(original[key], restored[key]), f"{name}.{key}"
    again = HalloNet(type(parts)(**loaded)).eval()
    with torch.no_grad():
        assert torch.equal(tiny_net(*batch.args()), again(*batch.args()))
