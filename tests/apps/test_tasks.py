"""compattr.tasks: question sets (capitals, JSONL, datasets), splits, encoding, accuracy, plans."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import compattr
from compattr import tasks
from compattr._testing import WORDS, tiny_llama, word_tokenizer
from compattr.tasks import QuestionSet


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine run 5-30x faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _toy(Q: int = 10, K: int = 3, seed: int = 0) -> QuestionSet:
    """Questions in the word tokenizer's vocabulary (w0 .. w54)."""
    rng = np.random.default_rng(seed)
    return QuestionSet(
        [" ".join(f"w{i}" for i in rng.integers(0, WORDS, rng.integers(2, 6))) for _ in range(Q)],
        [[f"w{i}" for i in rng.choice(WORDS, K, replace=False)] for _ in range(Q)],
        rng.integers(0, K, Q),
    )


# --------------------------------------------------------------------------- the type
def test_question_set_validates():
    with pytest.raises(ValueError, match="same number"):
        QuestionSet(["a", "b"], [["x", "y"], ["x", "y", "z"]], [0, 0])
    with pytest.raises(ValueError, match="K >= 2"):
        QuestionSet(["a"], [["x"]], [0])
    with pytest.raises(ValueError, match="option indices"):
        QuestionSet(["a"], [["x", "y"]], [2])
    with pytest.raises(ValueError, match="1 prompts, 2 option lists"):
        QuestionSet(["a"], [["x", "y"], ["x", "y"]], [0])


def test_indexing_and_split():
    qs = _toy(10)
    assert len(qs[:4]) == 4 and qs[:4].prompts == qs.prompts[:4]
    assert qs[[3, 1]].answers == (qs.answers[3], qs.answers[1])
    chosen = np.arange(10) % 3 == 0  # a boolean mask picks questions, not indices 0 and 1
    assert qs[chosen].prompts == tuple(qs.prompts[i] for i in (0, 3, 6, 9))
    with pytest.raises(IndexError, match="10 entries"):
        qs[chosen[:4]]
    train, test = qs.split(train=6)
    assert train.prompts == qs.prompts[:6] and test.prompts == qs.prompts[6:]
    train, test = qs.split(train=0.3)
    assert (len(train), len(test)) == (3, 7)
    a, b = qs.split(train=5, seed=1), qs.split(train=5, seed=1)
    assert a[0].prompts == b[0].prompts and sorted(a[0].prompts + a[1].prompts) == sorted(qs.prompts)
    for bad in (0, 10, 11, 1.5, True):
        with pytest.raises(ValueError, match="both sides"):
            qs.split(train=bad)


def test_jsonl_round_trip(tmp_path):
    qs = QuestionSet(["The capital of France is", "2 + 2 ="], [["Paris", "Rome"], ["4", "5"]], [0, 0])
    path = qs.to_jsonl(tmp_path / "q.jsonl")
    assert json.loads(path.read_text().splitlines()[0]) == {
        "prompt": "The capital of France is",
        "options": ["Paris", "Rome"],
        "answer": 0,
    }
    assert tasks.from_jsonl(path) == qs


def test_jsonl_round_trip_keeps_another_separator(tmp_path):
    """A set joined by no space was read back joined by one (to_jsonl did not write sep)."""
    qs = QuestionSet(["1 + 1 =", "2 + 2 ="], [["2", "3"], ["4", "5"]], [0, 0], sep="")
    assert tasks.from_jsonl(qs.to_jsonl(tmp_path / "q.jsonl")) == qs
    lines = [
        {"prompt": "a", "options": ["x", "y"], "answer": 0, "sep": ""},
        {"prompt": "b", "options": ["x", "y"], "answer": 0},
    ]
    (tmp_path / "mixed.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(ValueError, match="'sep' fields must agree"):
        tasks.from_jsonl(tmp_path / "mixed.jsonl")


def test_jsonl_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        tasks.from_jsonl(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "options": ["x", "y"], "answer": 0}\n{oops\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        tasks.from_jsonl(bad)
    bad.write_text('{"prompt": "a", "options": ["x", "y"]}\n')
    with pytest.raises(ValueError, match=r"no field\(s\) \['answer'\]"):
        tasks.from_jsonl(bad)
    bad.write_text('{"prompt": "a", "options": ["x", "y"], "answer": "z"}\n')
    with pytest.raises(ValueError, match="neither"):
        tasks.from_jsonl(bad)


@pytest.mark.parametrize(
    "line, message",
    [
        ("null", r"bad.jsonl:3 must be an object with the fields 'prompt', 'options' and 'answer', got null"),
        ("5", r"bad.jsonl:3 must be an object .* got 5"),
        ('["a", ["x", "y"], 0]', r"bad.jsonl:3 must be an object"),
        (
            '{"prompt": "a", "options": "xy", "answer": 0}',
            r"bad.jsonl:3: 'options' must be a list of strings, got \"xy\"",
        ),
        (
            '{"prompt": "a", "options": {"x": 1, "y": 2}, "answer": 0}',
            r"bad.jsonl:3: 'options' must be a list of strings",
        ),
        ('{"prompt": "a", "options": ["x", 2], "answer": 0}', r"bad.jsonl:3: 'options' must be a list of strings"),
        ('{"prompt": null, "options": ["x", "y"], "answer": 0}', r"bad.jsonl:3: 'prompt' must be a string, got null"),
        ('{"prompt": ["a"], "options": ["x", "y"], "answer": 0}', r"bad.jsonl:3: 'prompt' must be a string"),
        ('{"prompt": "a", "options": ["x", "y"], "answer": 0, "sep": 1}', r"bad.jsonl:3: 'sep' must be a string"),
    ],
)
def test_jsonl_lines_that_are_no_question_are_named(tmp_path, line, message):
    good = '{"prompt": "a", "options": ["x", "y"], "answer": 0}'
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{good}\n\n{line}\n{good}\n")  # a blank line 2: line numbers, not rows
    with pytest.raises(ValueError, match=message):
        tasks.from_jsonl(bad)


def test_records_name_the_question():
    with pytest.raises(ValueError, match="question 1: 'choices' must be a list of strings"):
        tasks.from_records(
            [{"q": "a", "choices": ["x", "y"], "a": 0}, {"q": "b", "choices": "xy", "a": 0}],
            question="q",
            options="choices",
            answer="a",
        )


def test_mmlu_style_records_letters_and_answer_forms():
    rows = [
        {"question": "Who?", "choices": ["Ada", "Bob", "Cy"], "answer": 1},
        {"question": "What?", "choices": ["x", "y", "z"], "answer": "C"},
        {"question": "Where?", "choices": ["here", "there", "nowhere"], "answer": "there"},
    ]
    qs = tasks.from_records(rows, question="question", options="choices", letters=True)
    assert qs.prompts[0] == "Who?\nA. Ada\nB. Bob\nC. Cy\nAnswer:"
    assert qs.options[0] == ("A", "B", "C")
    assert qs.answers == (1, 2, 1)
    cloze = tasks.from_records(rows, question="question", options="choices")
    assert cloze.prompts[0] == "Who?" and cloze.options[0] == ("Ada", "Bob", "Cy")


def test_from_dataset_reads_a_local_dataset_folder(tmp_path):
    folder = tmp_path / "mmlu"
    folder.mkdir()
    rows = [{"question": f"q{i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(6)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    qs = tasks.from_dataset(str(folder), "test")
    assert len(qs) == 6 and qs.answers == (0, 1, 2, 3, 0, 1)
    assert qs.prompts[0].endswith("D. d\nAnswer:") and qs.options[0] == ("A", "B", "C", "D")


def test_from_dataset_that_cannot_be_read_is_a_value_error(tmp_path):
    """Files of other columns in one folder raised the datasets library's own error (a
    traceback from the command line) instead of a ValueError."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "long.jsonl").write_text(json.dumps({"question": "q?", "choices": ["a", "b"], "answer": 0}) + "\n")
    (folder / "other.jsonl").write_text(json.dumps({"a": 1}) + "\n")
    with pytest.raises(ValueError, match="could not load the dataset"):
        tasks.from_dataset(str(folder), "train")


def test_load_reads_a_task_by_name_file_or_dataset(tmp_path):
    folder = tmp_path / "mmlu"
    folder.mkdir()
    rows = [{"question": f"q{i}?", "choices": ["a", "b", "c", "d"], "answer": i % 4} for i in range(5)]
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert tasks.load(str(folder), split="validation") == tasks.from_dataset(str(folder), "validation")
    path = _toy(4).to_jsonl(tmp_path / "q.jsonl")
    assert tasks.load(str(path)) == _toy(4)
    with pytest.raises(ValueError, match="is a file, not a datasets dataset.*split='validation'"):
        tasks.load(str(path), split="validation")  # was ignored
    with pytest.raises(ValueError, match="is a built-in task, not a datasets dataset.*config='x'"):
        tasks.load("capitals", config="x")
    pytest.importorskip("countryinfo", reason=f"needs {tasks.COUNTRYINFO_PIN} (pip install --no-deps)")
    assert tasks.load("continents", seed=2) == tasks.continents(seed=2)
    assert tasks.load("capitals") == tasks.capitals()


# --------------------------------------------------------------------------- capitals
def _capitals(**kwargs) -> QuestionSet:
    pytest.importorskip("countryinfo", reason=f"needs {tasks.COUNTRYINFO_PIN} (pip install --no-deps)")
    return tasks.capitals(**kwargs)


def test_capitals_questions_are_well_formed():
    qs = _capitals()
    assert len(qs) > 200 and qs.n_options == 4
    for prompt, options in zip(qs.prompts, qs.options):
        assert prompt.startswith("The capital of ") and prompt.endswith(" is")
        assert len(set(options)) == 4
    by_country = {p: o[a] for p, o, a in zip(qs.prompts, qs.options, qs.answers)}
    assert by_country["The capital of France is"] == "Paris"
    assert by_country["The capital of Japan is"] == "Tokyo"
    assert np.bincount(qs.answers, minlength=4).min() > len(qs) / 8  # answer positions vary


def test_capitals_are_seeded():
    assert _capitals(seed=0) == _capitals(seed=0)
    assert _capitals(seed=0) != _capitals(seed=1)
    two = _capitals(n_options=2)
    assert two.n_options == 2
    with pytest.raises(ValueError, match="n_options"):
        _capitals(n_options=1)


def test_capitals_missing_package_names_the_pip_command(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_countryinfo(name, *args, **kwargs):
        if name == "countryinfo":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_countryinfo)
    with pytest.raises(compattr.models.MissingAssetError, match=r"pip install --no-deps countryinfo==1\.0\.1"):
        tasks.capitals()


def test_continents_questions_are_well_formed_and_seeded():
    pytest.importorskip("countryinfo", reason=f"needs {tasks.COUNTRYINFO_PIN} (pip install --no-deps)")
    qs = tasks.continents()
    assert len(qs) > 200 and qs.n_options == 4
    by_country = {p: o[a] for p, o, a in zip(qs.prompts, qs.options, qs.answers)}
    assert by_country["France is a country in"] == "Europe"
    assert by_country["Japan is a country in"] == "Asia"
    assert by_country["Brazil is a country in"] == "America"
    assert by_country["Kenya is a country in"] == "Africa"
    for options in qs.options:
        assert len(set(options)) == 4 and set(options) <= {"Africa", "America", "Asia", "Europe", "Oceania"}
    assert np.bincount(qs.answers, minlength=4).min() > len(qs) / 8
    assert tasks.continents(seed=3) == tasks.continents(seed=3) != qs
    assert tasks.continents(n_options=5).n_options == 5
    with pytest.raises(ValueError, match="n_options"):
        tasks.continents(n_options=6)
    assert tasks.TASKS["continents"] is tasks.continents and tasks.TASKS["capitals"] is tasks.capitals


# --------------------------------------------------------------------------- encode / accuracy
def test_encode_gives_the_right_value():
    qs = _toy(6, K=3)
    tok = word_tokenizer()
    inputs, value = qs.encode(tok, metric="accuracy")
    assert isinstance(value, compattr.values.MultipleChoice)
    assert value.metric == "accuracy" and value.K == 3
    assert value.answers.tolist() == list(qs.answers)
    for q in range(len(qs)):
        prompt = inputs["input_ids"][q][inputs["attention_mask"][q].bool()].tolist()
        assert prompt == tok(qs.prompts[q])["input_ids"]
        assert [o.tolist() for o in value.options[q]] == [tok(" " + o)["input_ids"] for o in qs.options[q]]
    assert inputs["input_ids"].shape == (6, max(len(p.split()) for p in qs.prompts))
    alike = QuestionSet(["w1 w2", "w3"], [["w4", "w5"], ["nothing", "unknown"]], [0, 1])  # both [UNK]
    with pytest.raises(ValueError, match=r"questions \[1\] have options that tokenize alike"):
        alike.encode(tok)


def _manual_answered(model, tok, qs: QuestionSet) -> list[bool]:
    right = []
    with torch.inference_mode():
        for prompt, options, answer in zip(qs.prompts, qs.options, qs.answers):
            p = tok(prompt)["input_ids"]
            scores = []
            for option in options:
                o = tok(" " + option)["input_ids"]
                logp = torch.log_softmax(model(input_ids=torch.tensor([p + o])).logits[0], -1)
                scores.append(sum(float(logp[len(p) - 1 + j, t]) for j, t in enumerate(o)))
            right.append(scores[answer] > max(s for k, s in enumerate(scores) if k != answer))  # a tie: wrong
    return right


def _manual_accuracy(model, tok, qs: QuestionSet) -> float:
    return float(np.mean(_manual_answered(model, tok, qs)))


def test_answered_matches_a_manual_forward_per_question():
    model, tok, qs = tiny_llama(), word_tokenizer(), _toy(12, K=3)
    heads = compattr.AttentionHeads(model, layers=[1, 2])
    K = np.stack([np.ones(heads.n, bool), np.arange(heads.n) % 3 == 0])
    right = tasks.answered(model, tok, qs, heads, K)
    assert right.shape == (2, 12) and right.dtype == bool
    assert right[0].tolist() == _manual_answered(model, tok, qs)
    with heads.masked(K[1]):
        assert right[1].tolist() == _manual_answered(model, tok, qs)
    assert right[1].tolist() != right[0].tolist()  # the mask changes some answers: the test can fail
    assert tasks.answered(model, tok, qs, heads, K[1]).tolist() == right[1].tolist()


def test_accuracy_matches_a_manual_forward_and_takes_plans():
    model, tok, qs = tiny_llama(), word_tokenizer(), _toy(12, K=3)
    assert tasks.accuracy(model, tok, qs) == pytest.approx(_manual_accuracy(model, tok, qs))
    heads = compattr.AttentionHeads(model, layers=[1, 2])
    none_masked = tasks.accuracy(model, tok, qs, heads, np.ones(heads.n, bool))
    assert none_masked == pytest.approx(_manual_accuracy(model, tok, qs))
    K = np.stack([np.ones(heads.n, bool), np.arange(heads.n) % 2 == 0])
    both = tasks.accuracy(model, tok, qs, heads, K)
    assert both.shape == (2,) and both[0] == pytest.approx(none_masked)
    with heads.masked(K[1]):
        assert both[1] == pytest.approx(_manual_accuracy(model, tok, qs))
    plan = compattr.PruningPlan(K[1])
    assert tasks.accuracy(model, tok, qs, heads, plan) == pytest.approx(both[1])
    named = compattr.PruningPlan(K[1], names=heads.names)
    assert tasks.accuracy(model, tok, qs, heads, named) == pytest.approx(both[1])
    other_layers = compattr.AttentionHeads(model, layers=[0, 1])  # as many heads, other names
    with pytest.raises(ValueError, match="the plan covers the features"):
        tasks.accuracy(model, tok, qs, other_layers, named)
    with pytest.raises(ValueError, match="heads="):
        tasks.accuracy(model, tok, qs, kept=K[1])


def test_compare_plans_on_a_tiny_model(tmp_path, monkeypatch):
    model, tok = tiny_llama(layers=3, heads=4, kv_heads=2), word_tokenizer()
    train, test = _toy(14, K=3).split(train=8)
    heads = compattr.AttentionHeads(model)
    inputs, value = train.encode(tok)
    ex = compattr.explain(
        model,
        features=heads,
        value=value,
        inputs=inputs,
        budget=80,
        test_masks=20,
        seed=0,
        progress=False,
        cache_dir=tmp_path / "q",
    )
    # Every train-value mask the methods send to the model is recorded (no cache, so each
    # one is a forward pass): their count must equal the calls the table reports.
    sent = []
    run_queries = tasks.run_queries

    def recording(features, K, **kwargs):
        sent.append(len(K))
        return run_queries(features, K, **kwargs)

    monkeypatch.setattr(tasks, "run_queries", recording)
    limits = []  # each verification round's ILP time limit reaches verified_plan
    verified_plan = tasks.verified_plan

    def recording_limit(*args, **kwargs):
        limits.append(kwargs["time_limit"])
        return verified_plan(*args, **kwargs)

    monkeypatch.setattr(tasks, "verified_plan", recording_limit)
    plans, table = tasks.compare_plans(
        ex, model, tok, heads, train, test, 6, rounds=2, per_round=3, min_per_layer=1, progress=False
    )
    assert limits == [compattr.optimize.ROUND_TIME_LIMIT]
    assert list(plans) == ["ProxySPEX", *tasks.BASELINES]
    assert table["method"].tolist() == ["unpruned", "ProxySPEX", *tasks.BASELINES]
    assert table["heads kept"].tolist() == [12, 6, 6, 6, 6, 6]
    for plan in plans.values():
        assert (plan.kept_per_group()["kept"] >= 1).all()
    calls = dict(zip(table["method"], table["model calls"]))
    search = table.attrs["verification"]
    distinct = len(np.unique(np.packbits(ex.masks, axis=1), axis=0))  # each evaluated once
    assert 1 <= len(search) <= 6 and calls["ProxySPEX"] == distinct + len(search)
    assert calls["LASSO"] == distinct and calls["single-head"] == 13
    assert calls["greedy"] <= calls["ProxySPEX"] and calls["Best-of-N"] <= calls["ProxySPEX"]
    assert table.attrs["best_of"] == calls["ProxySPEX"]  # the draws Best-of-N was given
    assert sum(sent[:-1]) == len(search) + calls["Best-of-N"] + calls["greedy"] + calls["single-head"]
    # the plan is the best measured candidate of the verification
    assert table["train value"].iloc[1] == pytest.approx(max(search["measured"].max(), search["best"].max()))
    K = np.stack([p.kept for p in plans.values()])
    right = tasks.answered(model, tok, test, heads, K)
    assert table["test accuracy"].iloc[1:].tolist() == pytest.approx(list(right.mean(1)))
    assert table["vs ProxySPEX"].iloc[1:].tolist() == pytest.approx(list(right.mean(1) - right[0].mean()))
    assert (table["ci low"] <= table["test accuracy"]).all() and (table["test accuracy"] <= table["ci high"]).all()
    assert table["vs low"].iloc[1] == table["vs high"].iloc[1] == 0
    assert table["train value"].iloc[1] == pytest.approx(compattr.Query(model, heads, value, inputs).evaluate(K[:1])[0])
    assert plans["ProxySPEX"].value == pytest.approx(table["predicted"].iloc[1])
    with pytest.raises(ValueError, match="unknown baselines"):
        tasks.compare_plans(ex, model, tok, heads, train, test, 6, baselines=["random"], progress=False)
    tasks.compare_plans(ex, model, tok, heads, train, test, 6, baselines=[], rounds=1, time_limit=0.5, progress=False)
    assert limits[-1] == 0.5
    # A surrogate shifted up predicts positive log-probabilities, which cannot be: a warning
    # names the rows (the train values are cached: no new model query but the test accuracy).
    shifted = dataclasses.replace(
        ex, spectrum=ex.spectrum.with_coefs(ex.spectrum.coefs + (ex.spectrum.degrees == 0) * 50.0)
    )
    with pytest.warns(compattr.optimize.ValueRangeWarning, match=r"range \[-∞, 0\]: unpruned \+.*ProxySPEX \+"):
        tasks.compare_plans(
            shifted,
            model,
            tok,
            heads,
            train,
            test,
            6,
            baselines=["LASSO"],
            rounds=1,
            min_per_layer=1,
            cache_dir=tmp_path / "q",
            progress=False,
        )
    # an explanation of another metric, or of other heads, joined its outputs to these
    with pytest.raises(ValueError, match=r"fitted on MultipleChoice \(logprob\), the plans would measure"):
        tasks.compare_plans(ex, model, tok, heads, train, test, 6, metric="accuracy", baselines=[], progress=False)
    other = compattr.AttentionHeads(model, layers=[0, 1, 2])  # the same heads: accepted
    assert other.names == heads.names
    fewer = compattr.AttentionHeads(model, layers=[1, 2])
    with pytest.raises(ValueError, match="are not these heads"):
        tasks.compare_plans(ex, model, tok, fewer, train, test, 6, baselines=[], progress=False)


def test_verdict_names_the_winner_and_what_the_intervals_tell_apart():
    import pandas as pd

    table = pd.DataFrame(
        {
            "method": ["unpruned", "ProxySPEX", "LASSO", "Best-of-N", "greedy"],
            "test accuracy": [0.80, 0.78, 0.70, 0.77, 0.79],
            "vs low": [-0.01, 0.0, -0.12, -0.04, 0.005],
            "vs high": [0.05, 0.0, -0.03, 0.02, 0.03],
        }
    )
    text = tasks.verdict(table)
    assert text.startswith("greedy won with test accuracy 0.790.")  # unpruned is no plan
    assert "ProxySPEX is better than LASSO with the 95 % interval above zero." in text
    assert "greedy is better than ProxySPEX" in text and "Against Best-of-N the interval includes zero" in text
    table.attrs["confidence"] = 0.9
    table["test accuracy"] = 0.75
    assert tasks.verdict(table).startswith("every plan tied at test accuracy 0.750.")
    assert "90 % interval" in tasks.verdict(table)


def test_a_string_where_a_sequence_belongs_is_refused():
    """QuestionSet(["q"], ["ParisRome"], [0]) made nine one-letter options of the string."""
    with pytest.raises(ValueError, match="option lists, not a string"):
        tasks.QuestionSet(["w1 w2"], ["ParisRome"], [0])
    with pytest.raises(ValueError, match="prompts must be a sequence of strings"):
        tasks.QuestionSet("AB", [["w1", "w2"], ["w3", "w4"]], [0, 1])


def test_options_are_the_tokens_that_continue_the_prompt():
    """Each option was tokenized alone: a tokenizer that marks a word's start (SentencePiece's
    '▁', as Llama 2's normalizer prepends it) scored a stray '▁' before every option; and an
    end token the tokenizer appends to the prompt stood between it and the options."""
    from tokenizers import Tokenizer, decoders, models, normalizers
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{w}", -3.0) for w in ("The", "capital", "of", "France", "is", "Paris", "Rome")]
    vocab += [(c, -9.0) for c in "ParisRome"]
    core = Tokenizer(models.Unigram(vocab, unk_id=0))
    core.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    core.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    sentencepiece = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    _, value = tasks.QuestionSet(["The capital of France is"], [["Paris", "Rome"]], [0]).encode(sentencepiece)
    assert [sentencepiece.convert_ids_to_tokens(o.tolist()) for o in value.options[0]] == [["▁Paris"], ["▁Rome"]]
    appended = word_tokenizer()
    appended._tokenizer.post_processor = TemplateProcessing(
        single="[BOS] $A [SEP]", special_tokens=[("[BOS]", 5), ("[SEP]", 4)]
    )
    inputs, value = tasks.QuestionSet(["w1 w2 w3"], [["w4", "w5"]], [0]).encode(appended)
    assert appended.convert_ids_to_tokens(inputs["input_ids"][0].tolist()) == ["[BOS]", "w1", "w2", "w3"]
    assert [appended.convert_ids_to_tokens(o.tolist()) for o in value.options[0]] == [["w4"], ["w5"]]
