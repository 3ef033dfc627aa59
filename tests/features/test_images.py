"""Image patches on a small CNN classifier."""

import numpy as np
import pytest
import torch
from torch import nn

from compattr.features import ImagePatches, check_feature_set
from compattr.features.images import gaussian_blur
from compattr.query import Query
from compattr.values import ClassLogit

torch.set_num_threads(1)


def image(C=3, H=10, W=12, seed=0):
    return torch.randn(C, H, W, generator=torch.Generator().manual_seed(seed))


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 5)
    ).eval()


def test_grid_layout_and_uneven_patches():
    patches = ImagePatches(image(H=10, W=12), grid=(3, 4))
    assert patches.n == 12 and patches.names[:5] == ["P(0,0)", "P(0,1)", "P(0,2)", "P(0,3)", "P(1,0)"]
    assert patches.groups.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    sizes = torch.bincount(patches.pixel_patch.flatten(), minlength=12).view(3, 4)
    assert sizes.sum() == 120 and sizes.min() >= 9 and sizes[:, 0].tolist() == [12, 9, 9]


@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
def test_masked_patches_show_the_fill_and_kept_ones_the_image(fill):
    x = image()
    patches = ImagePatches(x, grid=(2, 3), fill=fill)
    masks = torch.tensor([[True, False, True, True, True, False]])
    with patches.masking(masks, patches.inputs) as out:
        out = out[0]
    kept = masks[0][patches.pixel_patch]
    assert torch.equal(out[:, kept], x[:, kept])
    expected = {
        "zero": torch.zeros_like(x),
        "mean": x.mean((1, 2), keepdim=True).expand_as(x),
        "blur": gaussian_blur(x, patches.sigma),
    }[fill]
    assert torch.allclose(out[:, ~kept], expected[:, ~kept])


def test_blur_is_a_normalised_smoothing():
    x = image(H=16, W=16)
    blurred = gaussian_blur(x, 2.0)
    assert torch.allclose(gaussian_blur(torch.ones(1, 9, 9) * 3, 1.5), torch.full((1, 9, 9), 3.0), atol=1e-5)
    assert blurred.std() < 0.6 * x.std()


def test_classifier_query_on_patches_and_keyword_inputs():
    model = cnn()
    patches = ImagePatches(image(), grid=(2, 2), fill="mean")
    query = Query(model, patches, ClassLogit(), batch_size=3)
    check_feature_set(query)
    X = np.array([[1, 0, 0, 1], [0, 0, 0, 0]], bool)
    with torch.no_grad():
        cls = model(patches.inputs).argmax()
        expected = []
        for mask in X:
            keep = torch.from_numpy(mask)[patches.pixel_patch]
            expected.append(model(torch.where(keep, patches.image, patches.filled)[None])[0, cls])
    assert np.allclose(query.evaluate(X), torch.stack(expected).numpy(), atol=1e-5)

    class HF(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, pixel_values):
            return self.net(pixel_values)

    named = ImagePatches(image(), grid=(2, 2), fill="mean", input_name="pixel_values")
    assert np.allclose(Query(HF(), named, ClassLogit()).evaluate(X), query.evaluate(X), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(image=torch.zeros(2, 3, 4, 4)), r"\(C, H, W\)"),
        (dict(grid=(5, 1)), "does not fit"),
        (dict(fill="noise"), "fill must be one of"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ImagePatches(**{"image": torch.zeros(3, 4, 4), "grid": (2, 2), **kwargs})


def test_another_image_is_refused_and_channels_last_too():
    """The fill is made from the features' image: given another image, its masked patches
    showed the first one's mean (or blur). An image of shape (H, W, 3) read as 32 channels."""
    patches = ImagePatches(image(), grid=(2, 3), fill="mean")
    masks = torch.ones(1, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match="features' image"), patches.masking(masks, image(seed=1)[None]):
        pass
    with pytest.raises(ValueError, match="channels last"):
        ImagePatches(torch.randn(32, 32, 3), grid=(2, 3))
    assert ImagePatches(torch.randn(3, 32, 3), grid=(2, 3)).n == 6  # three channels of 32 x 3


def test_grouped_patches_mask_their_members_together():
    """Grouped over a masker of inputs (no model) was refused as built for another model."""
    from compattr.features import Grouped

    patches = ImagePatches(image(), grid=(2, 3))
    halves = Grouped(patches, [0, 0, 0, 1, 1, 1], names=["top", "bottom"])
    model = cnn()
    got = Query(model, halves, ClassLogit(labels=[1])).evaluate(np.array([[True, False], [False, True]]))
    expected = Query(model, patches, ClassLogit(labels=[1])).evaluate(np.repeat(np.eye(2, dtype=bool), 3, axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-6)
