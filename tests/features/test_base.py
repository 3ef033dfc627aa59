"""The SetFunction conformance check catches each kind of broken set function."""

import numpy as np
import pytest

from compattr.features import check_set_function
from compattr.features.base import digest


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
