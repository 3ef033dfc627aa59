"""The SetFunction conformance check catches each kind of broken set function."""

import numpy as np
import pytest
import torch

from compattr._testing import tiny_llama, word_tokenizer
from compattr.features import AttentionHeads, ImagePatches, MLPBlocks, Words, check_set_function
from compattr.features.base import digest, mask_rows


class Additive:
    def __init__(self, n=6):
        self.n = n
        self.names = [f"f{i}" for i in range(n)]
        self.groups = np.zeros(n)
        self.weights = np.arange(1.0, n + 1)

    def evaluate(self, masks):
        masks = np.asarray(masks)
        if masks.shape[1] != self.n:
            raise ValueError("wrong width")
        return masks @ self.weights

    def fingerprint(self):
        return "additive"


class BatchDependent(Additive):
    def evaluate(self, masks):
        return super().evaluate(masks) + len(masks)


class Noisy(Additive):
    rng = np.random.default_rng(0)

    def evaluate(self, masks):
        return super().evaluate(masks) + self.rng.normal(size=len(masks))


class NoWidthCheck(Additive):
    def evaluate(self, masks):
        return np.asarray(masks, float).sum(1)


class DuplicateNames(Additive):
    def __init__(self):
        super().__init__()
        self.names = ["a"] * self.n


class NaNs(Additive):
    def evaluate(self, masks):
        y = super().evaluate(masks)
        return np.where(np.asarray(masks).all(1), np.nan, y)


def test_a_correct_feature_set_passes():
    check_set_function(Additive())


@pytest.mark.parametrize(
    "features, match",
    [
        (BatchDependent(), "depend on the other rows|order of the mask rows"),
        (Noisy(), "not deterministic"),
        (NoWidthCheck(), "must raise ValueError"),
        (DuplicateNames(), "unique"),
        (NaNs(), "non-finite"),
    ],
)
def test_broken_feature_sets_fail_with_the_reason(features, match):
    with pytest.raises((AssertionError, ValueError), match=match):
        check_set_function(features)


def test_digest_tells_values_types_and_shapes_apart():
    assert digest(np.zeros(3)) != digest(np.zeros((3, 1))) != digest(np.zeros(3, np.float32))
    assert digest({"a": 1, "b": [2, 3]}) == digest({"b": [2, 3], "a": 1}) != digest({"a": 1, "b": [3, 2]})


def test_mask_rows_keeps_tensors_and_refuses_other_shapes_and_values():
    ones = torch.ones(3, requires_grad=True)
    assert mask_rows(ones, 3).shape == (1, 3) and mask_rows(ones, 3).requires_grad  # gradients pass
    assert mask_rows([[1, 0, 1]], 3).dtype == torch.bool
    for bad, match in [
        (torch.ones(2, 4, dtype=torch.bool), "shape"),
        (torch.tensor([1.0, 0.5, 0.0]), "boolean or 0/1"),
        (np.array([1, 0, 2]), "binary"),
        (np.ones((1, 2)), "columns"),
    ]:
        with pytest.raises(ValueError, match=match):
            mask_rows(bad, 3)


def test_every_masker_refuses_masks_of_another_width_or_fractions():
    """The maskers read masks by column: a wider one would silently mask by its extra
    columns, a fraction would scale an MLP's output by it."""
    model = tiny_llama(layers=2, heads=4)
    words = Words(word_tokenizer(), "w1 w2 w3")
    patches = ImagePatches(torch.rand(3, 8, 8), grid=(2, 2))
    maskers = [(AttentionHeads(model), None), (MLPBlocks(model), None)]
    maskers += [(words, words.inputs), (patches, patches.inputs)]
    for masker, inputs in maskers:
        for masks in (torch.ones(1, masker.n + 1, dtype=torch.bool), torch.full((1, masker.n), 0.5)):
            with pytest.raises(ValueError):
                if inputs is None:
                    masker.masked(masks).__enter__()
                else:
                    masker.masking(masks, inputs).__enter__()
