"""recipes/image_patches.py and the photo/EfficientNet loaders: a tiny random CNN (no assets),
and EfficientNet-Lite0 on a bundled photo (assets)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import image_patches as ip

from _assets import MissingAsset, efficientnet_lite0, photo, square_crop, to_model_input

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # runs a whole recipe script


GRID = (3, 3)


def _tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 5),
    ).eval()


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory):
    rgb = np.random.default_rng(0).integers(0, 256, (12, 18, 3), dtype=np.uint8)
    cache = tmp_path_factory.mktemp("queries")
    return _tiny_cnn(), ip.explain_image(_tiny_cnn(), "noise", rgb, GRID, alpha=4, test_masks=64, cache_dir=cache)


def _mean_filled(rgb: np.ndarray, kept: np.ndarray) -> torch.Tensor:
    """The model input with every masked patch painted the image's mean colour, by hand."""
    x = to_model_input(rgb)
    mean = x.mean((1, 2), keepdim=True)
    rows, cols = GRID
    h, w = rgb.shape[0] // rows, rgb.shape[1] // cols
    for i in np.flatnonzero(~kept):
        r, c = divmod(int(i), cols)
        x[:, r * h : (r + 1) * h, c * w : (c + 1) * w] = mean[:, :, :]
    return x


def test_outputs_are_the_logit_of_the_predicted_class_on_mean_filled_patches(tiny_result):
    model, res = tiny_result
    ex = res.explanation
    with torch.inference_mode():
        full = model(to_model_input(res.rgb)[None])[0]
        direct = torch.stack([model(_mean_filled(res.rgb, k)[None])[0, res.label] for k in ex.masks[:4]])
    assert res.label == int(full.argmax()) and res.full_output == pytest.approx(float(full.max()), abs=1e-6)
    np.testing.assert_allclose(ex.outputs[:4], direct.numpy(), atol=1e-5)
    assert ex.n == 9 and len(ex.masks) == 115 and len(ex.test_masks) == 64  # ceil(4 * 9 * log2 9)


def test_summary_and_interaction_rows(tiny_result):
    _, res = tiny_result
    row = ip.summary_row(res)
    assert row["patches"] == 9 and row["ProxySPEX R²"] == pytest.approx(res.explanation.faithfulness)
    assert 0.0 <= row["interaction energy"] <= 1.0
    rows = ip.interaction_rows(res, 3)
    assert len(rows) <= 3 and all(r["order"] >= 2 and "P(" in r["patches"] for r in rows)
    assert [abs(r["Fourier coef"]) for r in rows] == sorted((abs(r["Fourier coef"]) for r in rows), reverse=True)


def test_photo_loading_and_preprocessing():
    rgb = photo("china")  # scikit-learn's, always present
    assert rgb.dtype == np.uint8 and rgb.shape == (427, 640, 3)
    crop = square_crop(rgb)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    x = to_model_input(crop)
    assert x.shape == (3, 224, 224) and float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    with pytest.raises(ValueError, match="unknown photo"):
        photo("dog")


@pytest.mark.assets
def test_efficientnet_sees_a_cat_and_the_recipe_runs(tmp_path):
    try:
        model, cat = efficientnet_lite0(), square_crop(photo("cat"))
    except MissingAsset as missing:
        pytest.skip(str(missing))
    with torch.inference_mode():
        label = int(model(to_model_input(cat)[None]).argmax())
    assert 281 <= label <= 285  # ImageNet's domestic cats
    out = ip.main(["--out", str(tmp_path), "--photos", "cat", "--grid", "3", "3", "--alpha", "4", "--test-masks", "50"])
    text = (out / "results.md").read_text()
    assert re.search(r"\| cat +\| 285 +\|", text) and "Strongest patch interactions" in text
    assert (out / "patches_cat.png").stat().st_size > 0
