"""Image patches as features: a grid over one image, each cell kept or filled.

Masking a patch replaces its pixels by a fill image: zeros (``"zero"``), the image's
per-channel mean (``"mean"``) or a Gaussian blur of the image (``"blur"``). The grid need not
divide the image evenly: pixel row ``r`` belongs to patch row ``r * rows // H``. Use the
model's own patch grid for ViT/CLIP-style models (e.g. 14 x 14 for 224-pixel images with
16-pixel patches)::

    patches = ImagePatches(pixels, grid=(7, 7), fill="blur")
    ex = compattr.explain(model, patches, compattr.values.ClassLogit())   # the patches own the image
    masked = compattr.query.MaskedModel(model, patches, compattr.values.ClassLogit())  # masks -> outputs
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from .base import Inputs, digest, mask_rows

_FILLS = ("zero", "mean", "blur")


class ImagePatches:
    """A ``rows x cols`` grid of patches over one image ``(C, H, W)``.

    Parameters
    ----------
    image : (C, H, W) or (1, C, H, W) tensor
        The model's input (already normalised as the model expects).
    grid : (rows, cols)
        Number of patches along each axis.
    fill : {"zero", "mean", "blur"}
        What a masked patch shows.
    sigma : float, optional
        Standard deviation of the blur in pixels; default a quarter of the patch height.
    input_name : str, optional
        Pass the image as this keyword argument (``"pixel_values"`` for Hugging Face models);
        default positional.

    Attributes
    ----------
    n : int
        ``rows * cols``; feature ``i`` is patch ``(i // cols, i % cols)``.
    names : list of str
        ``'P(r,c)'``.
    groups : (n,) int array
        Patch row.
    inputs : tensor or dict
        The image with a batch axis.
    """

    def __init__(
        self,
        image: torch.Tensor,
        grid: tuple[int, int] = (7, 7),
        fill: str = "zero",
        sigma: float | None = None,
        input_name: str | None = None,
    ):
        image = torch.as_tensor(image)
        if image.ndim == 4 and image.shape[0] == 1:
            image = image[0]
        if image.ndim != 3:
            raise ValueError(f"image must have shape (C, H, W) or (1, C, H, W), got {tuple(image.shape)}.")
        if image.shape[0] > 4 and image.shape[-1] in (1, 3, 4):
            raise ValueError(
                f"image has shape {tuple(image.shape)}: channels last? ImagePatches takes (C, H, W); "
                "pass image.permute(2, 0, 1)."
            )
        rows, cols = (int(g) for g in grid)
        _, H, W = image.shape
        if not (1 <= rows <= H and 1 <= cols <= W):
            raise ValueError(f"grid {grid} does not fit an image of {H} x {W} pixels.")
        if fill not in _FILLS:
            raise ValueError(f"fill must be one of {_FILLS}, got {fill!r}.")
        self.grid, self.fill_mode = (rows, cols), fill
        self.n = rows * cols
        self.names = [f"P({r},{c})" for r in range(rows) for c in range(cols)]
        self.groups = np.repeat(np.arange(rows), cols)
        self.sigma = float(sigma) if sigma is not None else H / rows / 4
        self.input_name = input_name
        self.image = image
        self.inputs: Inputs = image[None] if input_name is None else {input_name: image[None]}
        patch_row = torch.arange(H) * rows // H
        patch_col = torch.arange(W) * cols // W
        self.pixel_patch = patch_row[:, None] * cols + patch_col[None, :]
        self.filled = _fill(image, fill, self.sigma)

    def __repr__(self) -> str:
        return f"ImagePatches(grid={self.grid}, fill={self.fill_mode!r}, image={tuple(self.image.shape)})"

    def fingerprint(self) -> str:
        """Identifies the grid, the fill and the image's pixels."""
        sigma = f", sigma={self.sigma:g}" if self.fill_mode == "blur" else ""
        return f"{self!r}{sigma} input={self.input_name} pixels#{digest(self.image)}"

    @contextmanager
    def masking(self, masks: torch.Tensor, inputs: Inputs) -> Iterator[Inputs]:
        """Images whose row ``b`` shows the fill image in the patches masked in ``masks[b]``."""
        if self.input_name is None:  # the inputs are the image tensor
            yield self._masked(masks, cast(torch.Tensor, inputs))
        else:  # a mapping that holds it under input_name
            named = cast(Mapping[str, Any], inputs)
            yield {**named, self.input_name: self._masked(masks, named[self.input_name])}

    def _masked(self, masks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The images ``x`` with the fill image in the patches masked in each row of ``masks``.

        Raises
        ------
        ValueError
            A row of ``x`` is not this image (at its dtype): the fill was made from this
            image, so another's masked patches would show this one's mean or blur.
        """
        if not torch.equal(x, self.image.to(device=x.device, dtype=x.dtype).expand_as(x)):
            raise ValueError(
                "every input row must be the features' image (features.inputs): the fill of masked "
                "patches is made from it. Build ImagePatches for each image."
            )
        masks = mask_rows(masks, self.n)
        keep = masks.bool()[:, self.pixel_patch.to(masks.device)].to(x.device)
        return torch.where(keep[:, None], x, self.filled.to(device=x.device, dtype=x.dtype))


def _fill(image: torch.Tensor, fill: str, sigma: float) -> torch.Tensor:
    if fill == "zero":
        return torch.zeros_like(image)
    if fill == "mean":
        return image.mean((1, 2), keepdim=True).expand_as(image).clone()
    return gaussian_blur(image, sigma)


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``image`` ``(C, H, W)``, reflecting at the borders."""
    radius = max(1, int(3 * sigma + 0.5))
    radius = min(radius, image.shape[1] - 1, image.shape[2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(image.device)
    C = image.shape[0]
    x = image.float()[None]
    x = F.conv2d(
        F.pad(x, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C
    )
    x = F.conv2d(
        F.pad(x, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C
    )
    return x[0].to(image.dtype)
