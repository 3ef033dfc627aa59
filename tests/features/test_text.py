"""Text units on a word-level tokenizer, with a tiny BERT classifier and a tiny Llama."""

import numpy as np
import pytest
import torch

from compattr._testing import tiny_bert, tiny_llama, word_tokenizer
from compattr.features import Sentences, TextSpans, Tokens, Words, check_feature_set
from compattr.features.text import _token_units
from compattr.query import Query
from compattr.values import ClassLogit, LogLikelihood

torch.set_num_threads(1)
TEXT = "w1 w2, w3. w4 w5!"


@pytest.fixture(scope="module")
def tokenizer():
    return word_tokenizer()


def tokens_of(tokenizer, ids):
    return tokenizer.convert_ids_to_tokens(ids.tolist())


def test_units_and_their_tokens(tokenizer):
    words = Words(tokenizer, TEXT, prefix="[CLS] w9 ", suffix=" w8 [SEP]")
    assert words.names == ["0:w1", "1:w2,", "2:w3.", "3:w4", "4:w5!"]
    assert words.groups.tolist() == [0, 0, 0, 1, 1]  # sentence of each word
    assert [words.unit_tokens(i) for i in range(5)] == [["w1"], ["w2", ","], ["w3", "."], ["w4"], ["w5", "!"]]
    tokens = tokens_of(tokenizer, words.inputs["input_ids"][0])
    fixed = [t for t, u in zip(tokens, words.token_units) if u == words.n]
    assert fixed == ["[CLS]", "w9", "w8", "[SEP]"]
    toks = Tokens(tokenizer, TEXT)
    assert toks.names == ["0:w1", "1:w2", "2:,", "3:w3", "4:.", "5:w4", "6:w5", "7:!"]
    assert toks.groups.tolist() == [0, 1, 1, 2, 2, 3, 4, 4]  # word of each token
    sentences = Sentences(tokenizer, "  " + TEXT + " w6")
    assert sentences.names == ["0:w1 w2, w3.", "1:w4 w5!", "2:w6"]


def test_masking_replaces_exactly_the_masked_units_tokens(tokenizer):
    words = Words(tokenizer, TEXT, prefix="[CLS] ", suffix=" [SEP]")
    masks = torch.tensor([[True, False, True, True, False], [False] * 5])
    with words.masking(masks, {k: v.repeat(2, 1) for k, v in words.inputs.items()}) as x:
        rows = [tokens_of(tokenizer, r) for r in x["input_ids"]]
    assert rows[0] == ["[CLS]", "w1", "[UNK]", "[UNK]", "w3", ".", "w4", "[UNK]", "[UNK]", "[SEP]"]
    assert rows[1] == ["[CLS]"] + ["[UNK]"] * 8 + ["[SEP]"]
    assert torch.equal(x["attention_mask"], words.inputs["attention_mask"].repeat(2, 1))


def test_tokens_overlapping_the_fixed_text_are_never_masked():
    offsets = np.array([[0, 0], [0, 3], [3, 6], [6, 9], [9, 12]])  # special, prefix, a|b split, text, suffix
    spans = np.array([[3, 5], [5, 9]])  # in full-string coordinates; text = [3, 9)
    units = _token_units(offsets, spans, 3, 9)
    assert units.tolist() == [2, 2, 0, 1, 2]
    straddling = _token_units(np.array([[2, 5]]), spans, 3, 9)
    assert straddling.tolist() == [2]


def test_replacement_tokens(tokenizer):
    assert Words(tokenizer, TEXT).replacement_id == tokenizer.unk_token_id
    assert Words(tokenizer, TEXT, replacement="[MASK]").replacement_id == tokenizer.mask_token_id
    assert Words(tokenizer, TEXT, replacement=7).replacement_id == 7
    with pytest.raises(ValueError, match="'zzz' is not in the vocabulary"):
        Words(tokenizer, TEXT, replacement="zzz")
    with pytest.raises(ValueError, match="ordered, non-empty"):
        TextSpans(tokenizer, TEXT, [(3, 5), (4, 6)])
    with pytest.raises(ValueError, match="no units"):
        Words(tokenizer, "   ")


def test_classifier_query_equals_masking_by_hand(tokenizer):
    model = tiny_bert(labels=3)
    words = Words(tokenizer, "w1 w2 w3 w4. w5 w6 w7!", prefix="[CLS] ", suffix=" [SEP]")
    query = Query(model, words, ClassLogit(), batch_size=4)
    check_feature_set(query)
    X = np.random.default_rng(0).random((6, words.n)) < 0.5
    with torch.no_grad():
        full = model(**words.inputs).logits[0].argmax()
        expected = []
        for mask in X:
            ids = words.inputs["input_ids"].clone()
            for i in np.flatnonzero(~mask):
                ids[0, words.token_units == i] = tokenizer.unk_token_id
            expected.append(model(input_ids=ids, attention_mask=words.inputs["attention_mask"]).logits[0, full])
    assert np.allclose(query.evaluate(X), torch.stack(expected).numpy(), atol=1e-5)


def test_causal_lm_answer_tokens_are_never_masked(tokenizer):
    model = tiny_llama()
    words = Words(tokenizer, "w1 w2 w3 w4 w5", prefix="[BOS] w20 ", suffix=" w21")
    value = LogLikelihood(max_new_tokens=3, per_token=False)
    query = Query(model, words, value)
    X = np.zeros((1, words.n), bool)
    with torch.no_grad():
        prepared, targets = value.prepare(model, words.inputs, 1)
        ids = prepared["input_ids"].clone()
        ids[0, : len(words.token_units)][torch.from_numpy(words.token_units < words.n)] = tokenizer.unk_token_id
        expected = value.score(model, {**prepared, "input_ids": ids}, targets)
    assert len(prepared["input_ids"][0]) == len(words.token_units) + 3
    assert np.allclose(query.evaluate(X), expected.numpy(), atol=1e-5)
    assert not np.allclose(query.evaluate(~X), expected.numpy(), atol=1e-3)
