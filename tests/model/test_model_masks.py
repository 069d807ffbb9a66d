"""The shared mask definition: landmark ids, one rule for an image and for a clip, fallbacks."""
from __future__ import annotations

import numpy as np
import pytest
from mediapipe.python.solutions import face_mesh_connections as mesh

from foundation.masks import FACE_OVAL_IDS, LIP_IDS, region_boxes, region_masks


def _face(shift: float = 0.0) -> np.ndarray:
    """Synthetic 478-point landmarks: a face box 40..88 x 30..100, lips 52..76 x 80..90 (pixels)."""
    pts = np.full((478, 2), 64.0)
    oval = np.array(FACE_OVAL_IDS)
    pts[oval[: len(oval) // 2]] = [40 + shift, 30]
    pts[oval[len(oval) // 2 :]] = [88 + shift, 100]
    lips = np.array(LIP_IDS)
    pts[lips[:10]] = [52 + shift, 80]
    pts[lips[10:]] = [76 + shift, 90]
    return pts


def test_landmark_ids_are_mediapipes_face_oval_and_outer_lips():
    assert set(FACE_OVAL_IDS) == {i for edge in mesh.FACEMESH_FACE_OVAL for i in edge}
    assert len(LIP_IDS) == 20 and set(LIP_IDS) <= {i for edge in mesh.FACEMESH_LIPS for i in edge}


def test_boxes_are_expanded_about_their_centre():
    face, lip = region_boxes(_face(), (128, 128))
    assert np.allclose(face, [64 - 28.8, 65 - 42, 64 + 28.8, 65 + 42])  # 48x70 box x 1.2
    assert np.allclose(lip, [40, 75, 88, 95])  # 24x10 box x 2.0


def test_one_image_and_a_still_clip_give_identical_masks():
    single = region_masks(_face(), (128, 128), (16, 16))
    clip = region_masks(np.stack([_face()] * 5), (128, 128), (16, 16))
    assert np.array_equal(single.face_region, clip.face_region)
    assert np.array_equal(single.regions, clip.regions)


def test_a_moving_clip_covers_the_union_of_its_frames():
    clip = region_masks(np.stack([_face(-10), _face(10)]), (128, 128), (32, 32))
    for shift in (-10, 10):
        assert (clip.face_region >= region_masks(_face(shift), (128, 128), (32, 32)).face_region).all()


@pytest.mark.parametrize("hw", [(64, 64), (16, 24)])
def test_soft_regions_at_any_resolution(hw):
    masks = region_masks(_face(), (128, 128), hw)
    pose, face, lip = masks.regions
    assert masks.regions.shape == (3, *hw) and masks.regions.dtype == np.float32
    assert masks.regions.min() >= 0 and masks.regions.max() <= 1
    lip_peak = np.unravel_index(lip.argmax(), hw)
    assert abs(lip_peak[0] / hw[0] - 85 / 128) < 0.1  # the lip mask sits on the lips
    assert pose[0, 0] > 0.9 and face[0, 0] < 0.1  # corners are background
    assert face[int(hw[0] * 50 / 128), hw[1] // 2] > 0.5  # mid-face (above the lips) is face
    assert masks.face_region.shape == (128, 128) and set(np.unique(masks.face_region)) == {0.0, 1.0}


def test_no_landmarks_fall_back_to_the_whole_image():
    for landmarks in (None, np.full((3, 478, 2), np.nan)):
        masks = region_masks(landmarks, (64, 64), (8, 8))
        assert masks.face_region.all()
        assert masks.regions[1].all() and not masks.regions[0].any() and not masks.regions[2].any()
    # frames without landmarks are skipped, the rest still count
    partial = region_masks(np.stack([_face(), np.full((478, 2), np.nan)]), (128, 128), (16, 16))
    assert np.array_equal(partial.regions, region_masks(_face(), (128, 128), (16, 16)).regions)
