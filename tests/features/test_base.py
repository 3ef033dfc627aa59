"""The SetFunction conformance check catches each kind of broken set function."""

import numpy as np
import pytest
import torch
from conftest import printed_under_hash_seeds

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
    # keys of several types (sorted() refused them), modules by their weights (a repr hides them)
    assert digest({0: 1.0, "other": 0.5}) == digest({"other": 0.5, 0: 1.0}) != digest({0: 1.0, "other": 0.6})
    assert digest({1: "a"}) != digest({"1": "a"})  # a key itself, not its str
    # frozenset keys: sorted() orders them by inclusion alone, so the order they were built in showed
    a, b, c = frozenset({1}), frozenset({2}), frozenset({3})
    assert digest({a: 1, b: 2, c: 3}) == digest({c: 3, a: 1, b: 2}) == digest({b: 2, c: 3, a: 1})
    torch.manual_seed(0)
    first, second = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    assert repr(first) == repr(second) and digest(first) != digest(second)
    assert digest(np.array(["cat", 3], dtype=object)) != digest(np.array(["cat", 4], dtype=object))


def test_digest_is_the_same_in_every_process():
    """A set's repr follows string hashing, an object array's bytes are pointers: their keys
    changed from one process to the next, so a cache never hit."""
    script = (
        "import numpy as np\n"
        "from compattr.features.base import digest\n"
        "print(digest({'positive', 'negative', 'neutral', 'mixed'}, frozenset({'a', 'b', 'c'}),"
        " np.array(['cat', 'dog', 3], dtype=object)))\n"
    )
    assert len(printed_under_hash_seeds("-c", script)) == 1


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


def _left_and_right_padded() -> tuple[dict, dict]:
    """The same two texts, the shorter padded on the left, then on the right (pad id 1)."""
    left = {
        "input_ids": torch.tensor([[1, 1, 10, 11, 12, 13], [20, 21, 22, 23, 24, 25]]),
        "attention_mask": torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]),
    }
    right = {
        "input_ids": torch.tensor([[10, 11, 12, 13, 1, 1], [20, 21, 22, 23, 24, 25]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]),
    }
    return left, right


@pytest.mark.parametrize("features", ["heads", "mlps"])
def test_patching_and_means_read_left_padded_rows_at_their_positions(features):
    """GPT-2 (absolute positions): the masked runs count a left-padded row's positions from
    its first token, but the pass that recorded the corrupted (or reference) activations did
    not, so patching from inputs equal to the clean ones changed the output, and means from
    left-padded references differed from the same texts right-padded (by 0.09 of 0.13)."""
    from compattr._testing import tiny_gpt2
    from compattr.query import MaskedModel
    from compattr.values import ClassLogit

    model = tiny_gpt2(layers=2, heads=4, hidden=32)
    left, right = _left_and_right_padded()
    build = (
        (lambda **kw: AttentionHeads(model, rescale=False, **kw))
        if features == "heads"
        else (lambda **kw: MLPBlocks(model, **kw))
    )
    patched = build(ablation="patch", corrupted=left)
    query = MaskedModel(model, patched, ClassLogit(), left, replay=False)
    y = query.evaluate(np.array([np.ones(patched.n, bool), np.zeros(patched.n, bool)]), per_example=True)
    np.testing.assert_allclose(y[1], y[0], atol=1e-6)
    X = _random_masks(patched.n)
    from_left = MaskedModel(model, build(ablation="mean", reference=left), ClassLogit(), right).evaluate(X)
    from_right = MaskedModel(model, build(ablation="mean", reference=right), ClassLogit(), right).evaluate(X)
    np.testing.assert_allclose(from_left, from_right, atol=1e-6)


def _random_masks(n: int) -> np.ndarray:
    return np.random.default_rng(0).random((6, n)) < 0.5


def test_a_model_that_counts_positions_from_its_tokens_keeps_them():
    """RoBERTa counts positions from padding_idx + 1, skipping its pad tokens: given position
    ids counted from 0 (as GPT-2 needs), every row of a batch with one left-padded row moved
    (an unpadded row's logits 0.11 → 0.32)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from compattr.features.base import with_positions
    from compattr.query.values import class_logits

    config = RobertaConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=32,
        max_position_embeddings=64,
        pad_token_id=1,
        num_labels=3,
        initializer_range=0.2,
    )
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config).eval()
    left, _ = _left_and_right_padded()
    assert with_positions(model, left) is left
    with torch.no_grad():
        alone = [
            model(input_ids=left["input_ids"][i : i + 1], attention_mask=left["attention_mask"][i : i + 1]).logits[0]
            for i in range(2)
        ]
        batched = class_logits(model, left)
    torch.testing.assert_close(batched, torch.stack(alone), atol=1e-5, rtol=0)
