"""Text units on a word-level tokenizer, with a tiny BERT classifier and a tiny Llama."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from compattr._testing import tiny_bert, tiny_llama, word_tokenizer
from compattr.features import Grouped, Sentences, TextSpans, Tokens, Words, check_feature_set
from compattr.features.text import _merged, _token_units
from compattr.query import MaskedModel, Query
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
    offsets = np.array([[0, 0], [0, 3], [3, 6], [6, 9], [9, 12]])  # special, prefix, text, text, suffix
    spans = np.array([[3, 6], [6, 9]])  # in full-string coordinates; text = [3, 9)
    text = "abcdefghijkl"  # no whitespace
    units = _token_units(offsets, spans, 3, 9, text)
    assert units.tolist() == [2, 2, 0, 1, 2]
    # a token across the prefix and unit 0 was kept, leaving unit 0 nothing to mask
    with pytest.raises(ValueError, match=r"unit 0 \('def'\) shares a token with the prefix"):
        _token_units(np.array([[2, 5], [5, 9]]), spans, 3, 9, text)
    # a unit whose characters no token holds
    with pytest.raises(ValueError, match=r"unit 0 \('def'\) owns no token"):
        _token_units(np.array([[6, 9]]), spans, 3, 9, text)


def test_a_token_holding_text_of_two_units_is_refused():
    """A byte-level tokenizer merges characters of neighbouring units not separated by
    whitespace (Chinese text with a segmenter's spans): the token went to the unit it
    overlapped most, so masking one unit left part of its text and masking the other hid
    part of its neighbour's, silently."""
    text = "abcdefghi"
    offsets = np.array([[0, 4], [4, 7], [7, 9]])  # "abcd", "efg", "hi"
    spans = np.array([[0, 5], [5, 9]])  # "abcde" | "fghi": token "efg" holds both
    with pytest.raises(ValueError, match=r"token 1 \('efg'\) holds text of units 0 \('abcde'\) and 1"):
        _token_units(offsets, spans, 0, 9, text)
    # whitespace at a token's ends belongs to no unit: a token " fg" after "abcde" is unit 1's
    spaced = "abcde fghi"
    units = _token_units(np.array([[0, 5], [5, 8], [8, 10]]), np.array([[0, 5], [6, 10]]), 0, 10, spaced)
    assert units.tolist() == [0, 1, 1]


def sentencepiece_tokenizer():
    """A word-level tokenizer that marks spaces as SentencePiece's do (Llama 2, Mistral,
    Gemma): the offsets of ``▁great`` include the space before ``great``."""
    words = ["<unk>", "▁Review:", "▁great", "▁movie", "▁Answer:"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def byte_level_tokenizer():
    """A byte-level BPE tokenizer without merges (as GPT-2's and Llama 3's, before merging):
    one token per byte, so the two bytes of ``é`` are two tokens with the same offsets."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate([*alphabet, "<unk>"])}, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")


def test_a_token_that_covers_the_space_after_a_prefix_is_the_texts():
    tokenizer = sentencepiece_tokenizer()
    words = Words(tokenizer, "great movie", prefix="Review: ", suffix=" Answer:")
    assert [words.unit_tokens(i) for i in range(words.n)] == [["▁great"], ["▁movie"]]
    with words.masking(torch.tensor([[False, True]]), words.inputs) as x:
        assert tokens_of(tokenizer, x["input_ids"][0]) == ["▁Review:", "<unk>", "▁movie", "▁Answer:"]
    tokens = Tokens(tokenizer, "great movie", prefix="Review: ")
    assert tokens.names == ["0:great", "1:movie"]


def test_tokens_sharing_a_character_are_one_feature_and_spaces_none():
    tokenizer = byte_level_tokenizer()
    tokens = Tokens(tokenizer, "ok é")
    assert tokenizer.convert_ids_to_tokens(tokens.inputs["input_ids"][0].tolist()) == ["o", "k", "Ġ", "Ã", "©"]
    assert tokens.names == ["0:o", "1:k", "2:é"]
    assert tokens.token_units.tolist() == [0, 1, 3, 2, 2]
    assert _merged(np.array([[0, 1], [2, 4], [3, 4], [3, 5], [5, 6]])).tolist() == [[0, 1], [2, 5], [5, 6]]


def test_inputs_that_do_not_begin_with_the_text_are_refused(tokenizer):
    """Masks pick a text's tokens by position: in other inputs they would replace others."""
    words = Words(tokenizer, "w1 w2 w3")
    own = words.inputs["input_ids"]
    keep_all = torch.ones(1, words.n, dtype=torch.bool)
    with words.masking(keep_all, torch.cat([own, own.new_tensor([[7]])], 1)) as x:  # an answer after it
        assert torch.equal(x[:, : own.shape[1]], own)
    padded_left = torch.cat([own.new_zeros(1, 2), own], 1)
    other_text = Words(tokenizer, "w4 w5 w6").inputs["input_ids"]
    for inputs in (padded_left, own[:, :-1], {"input_ids": other_text}):
        with pytest.raises(ValueError, match="begin with the tokenized text"), words.masking(keep_all, inputs):
            pass


def test_mask_gradient_refuses_words_whose_tokens_are_replaced(tokenizer):
    """No gradient reaches a mask that replaces tokens, though the model's weights want one."""
    model = tiny_bert(labels=3)
    assert any(p.requires_grad for p in model.parameters())
    query = MaskedModel(model, Words(tokenizer, "w1 w2 w3", prefix="[CLS] ", suffix=" [SEP]"), ClassLogit())
    with pytest.raises(TypeError, match="does not depend differentiably on the masks of Words"):
        query.mask_gradient()


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


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("He paid 3.5 dollars. He left.", ["He paid 3.5 dollars.", "He left."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ('w1 w2 "w3 w4." w5 w6 "w7."', ['w1 w2 "w3 w4."', 'w5 w6 "w7."']),
        ("One! Two? Three...  Four", ["One!", "Two?", "Three...", "Four"]),
        ("  no end  ", ["no end"]),
    ],
)
def test_a_sentence_ends_at_punctuation_before_whitespace(text, sentences):
    """Every '.', '!' or '?' ended a sentence: 3.5 was split in two (the unit '5 dollars.'
    then left its '5' visible in the token '3.5'), a closing quote began the next sentence,
    and a text ending in '."' was refused."""
    from compattr.features.text import _sentence_spans

    assert [text[a:b] for a, b in _sentence_spans(text)] == sentences


def test_tokens_joined_to_the_prefix_are_refused(tokenizer):
    """A token across the prefix and the text ('w9w1' reads '[UNK]') dropped 'w1' from the
    features without a word, where Words refuses the same input."""
    with pytest.raises(ValueError, match="joined to the prefix or suffix"):
        Tokens(tokenizer, "w1 w2 w3", prefix="w9")
    with pytest.raises(ValueError, match="joined to the prefix or suffix"):
        Tokens(tokenizer, "w1 w2 w3", suffix="w8")
    assert Tokens(tokenizer, "w1 w2 w3", prefix="w9 ").n == 3


def test_a_classifier_reading_its_pad_token_is_not_given_it_as_the_replacement(tokenizer):
    """A sequence classifier takes its logits at the last token that is not pad: replacing
    masked words by the pad token (the default where the tokenizer's unk or pad is the
    model's pad, as GPT-2's) moved the read-out instead of replacing the last words."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from compattr._testing import VOCAB

    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4, num_labels=3)
    config.pad_token_id = tokenizer.unk_token_id
    model = GPT2ForSequenceClassification(config).eval()
    words = Words(tokenizer, "w1 w2 w3 w4")
    with pytest.raises(ValueError, match="pad token"):
        MaskedModel(model, words, ClassLogit(labels=[0]))
    with pytest.raises(ValueError, match="pad token"):  # grouped words hid their replacement
        MaskedModel(model, Grouped(words, [0, 0, 1, 1]), ClassLogit(labels=[0]))
    other = Words(tokenizer, "w1 w2 w3 w4", replacement="[MASK]")
    masks = np.array([[True, True, True, False], [True] * 4])
    got = MaskedModel(model, other, ClassLogit(labels=[0])).evaluate(masks)
    ids = other.inputs["input_ids"].clone()
    ids[0, torch.from_numpy(other.token_units == 3)] = tokenizer.mask_token_id
    with torch.no_grad():
        assert got[0] == pytest.approx(model(**{**other.inputs, "input_ids": ids}).logits[0, 0].item(), abs=1e-6)
