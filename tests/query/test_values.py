"""Value functions, each checked against a direct computation from the model's logits."""

import numpy as np
import pytest
import torch
from transformers import BatchEncoding

from compattr._testing import tiny_bert, tiny_gemma3, tiny_gpt2, tiny_llama
from compattr.values import ClassLogit, LogLikelihood, Margin, MultipleChoice, logits_of, margin

torch.set_num_threads(1)


def ids(E=4, seq=6, seed=0):
    return torch.randint(6, 60, (E, seq), generator=torch.Generator().manual_seed(seed))


def run(value, model, inputs):
    with torch.no_grad():
        x, t = value.prepare(model, inputs, 2)
        return value.score(model, x, t), x, t


def test_class_logit_log_odds_and_margin_of_the_full_input_prediction():
    model = tiny_bert(labels=4)
    x = ids()
    with torch.no_grad():
        logits = model(x).logits.double()
    predicted = logits.argmax(-1)
    score, _, target = run(ClassLogit(), model, x)
    assert torch.equal(target, predicted)
    assert torch.allclose(score.double(), logits[range(4), predicted], atol=1e-5)
    p = torch.softmax(logits, -1)[range(4), predicted]
    assert torch.allclose(run(ClassLogit(log_odds=True), model, x)[0].double(), torch.log(p / (1 - p)), atol=1e-5)
    others = [max(l for c, l in enumerate(row.tolist()) if c != k) for row, k in zip(logits, predicted)]
    expected = logits[range(4), predicted] - torch.tensor(others, dtype=torch.float64)
    assert torch.allclose(run(Margin(), model, x)[0].double(), expected, atol=1e-5)
    assert (run(Margin(), model, x)[0] >= 0).all()


def test_given_labels_replace_the_prediction_and_are_checked():
    model = tiny_bert(labels=3)
    labels = torch.tensor([2, 0, 1, 1])
    score, _, target = run(Margin(labels), model, ids())
    assert torch.equal(target, labels)
    with torch.no_grad():
        assert torch.allclose(score, margin(model(ids()).logits, labels))
    with pytest.raises(ValueError, match=r"got \(3,\) labels for 4 examples"):
        run(ClassLogit(labels[:3]), model, ids())


def test_labels_outside_the_classes_are_named():
    model = tiny_bert(labels=3)
    for value in (ClassLogit([0, 5, 1, 1]), Margin([0, 1, 3, 1]), ClassLogit([0, 1, 2, 3], log_odds=True)):
        bad = int(value.labels.max())
        with pytest.raises(ValueError, match=rf"label {bad} of example \d is not a class: .* 3 classes"):
            run(value, model, ids())
    with pytest.raises(ValueError, match=r"label 70 of example 0 .* 64 classes \(for a language model"):
        run(ClassLogit([70, 1]), tiny_llama(), ids(E=2))  # next-token logits: the vocabulary
    for labels in ([0, -1, 1, 1], [0.5, 1, 1, 1]):
        with pytest.raises(ValueError, match="class indices"):
            ClassLogit(labels)


@pytest.mark.parametrize("mapping", [dict, BatchEncoding])  # a tokenizer's output is not a dict
def test_sequence_logits_are_read_at_the_last_attended_token(mapping):
    model = tiny_llama()
    x = ids(E=2, seq=7)
    mask = torch.ones_like(x)
    mask[0, 4:] = 0  # right padding
    score, _, target = run(ClassLogit(), model, mapping({"input_ids": x, "attention_mask": mask}))
    with torch.no_grad():
        alone = model(x[:1, :4]).logits[0, -1]
    assert target[0] == alone.argmax() and torch.isclose(score[0], alone.max(), atol=1e-5)


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_llama], ids=["absolute positions", "rotary"])
def test_class_logits_of_left_padded_rows_equal_each_row_alone(build):
    """GPT-2's absolute positions saw a left-padded row shifted by its padding (0.036 off);
    its tokens now count positions from the first attended one, as each row alone does."""
    model = build()
    rows = [ids(E=1, seq=6, seed=1)[0], ids(E=1, seq=3, seed=2)[0]]
    padded, mask = torch.zeros(2, 6, dtype=torch.long), torch.zeros(2, 6, dtype=torch.long)
    for i, row in enumerate(rows):
        padded[i, 6 - len(row) :], mask[i, 6 - len(row) :] = row, 1
    score, _, target = run(ClassLogit(), model, {"input_ids": padded, "attention_mask": mask})
    with torch.no_grad():
        alone = torch.stack([model(row[None]).logits[0, -1] for row in rows])
    assert torch.equal(target, alone.argmax(-1)) and torch.allclose(score, alone.amax(-1), atol=1e-5)


def test_log_likelihood_of_the_greedy_answer():
    model = tiny_gpt2()
    prompt = ids(E=1, seq=5)
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)
        logp = torch.log_softmax(model(generated).logits[0].double(), -1)
    answer = generated[0, 5:]
    expected = sum(logp[4 + i, tok] for i, tok in enumerate(answer))
    for per_token, want in ((False, expected), (True, expected / 3)):
        score, x, t = run(LogLikelihood(max_new_tokens=3, per_token=per_token), model, {"input_ids": prompt})
        assert torch.equal(x["input_ids"][0], generated[0]) and t["scored"][0].sum() == 3
        assert torch.isclose(score[0].double(), want, atol=1e-4)


def test_log_likelihood_ignores_padding_on_either_side():
    model = tiny_llama()
    prompts = [ids(E=1, seq=4, seed=1)[0], ids(E=1, seq=6, seed=2)[0]]
    answers = [[7, 8], [9]]
    value = LogLikelihood(answers=answers, per_token=False)
    alone = [
        run(value.__class__(answers=[a], per_token=False), model, {"input_ids": p[None]})[0]
        for p, a in zip(prompts, answers)
    ]
    for side in ("left", "right"):
        padded = torch.zeros(2, 6, dtype=torch.long)
        mask = torch.zeros(2, 6, dtype=torch.long)
        for i, p in enumerate(prompts):
            where = slice(6 - len(p), 6) if side == "left" else slice(0, len(p))
            padded[i, where], mask[i, where] = p, 1
        score = run(value, model, {"input_ids": padded, "attention_mask": mask})[0]
        assert torch.allclose(score, torch.cat(alone), atol=1e-5), side
    with pytest.raises(ValueError, match="got 2 answers for 1 examples"):
        run(value, model, {"input_ids": prompts[0][None]})


class _IgnoresLayout(torch.nn.Module):
    """A causal LM that drops custom attention masks and position ids (as some do)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        return self.model(input_ids=input_ids, **kwargs)


@pytest.mark.parametrize(
    "build, pack, packed",
    [
        (tiny_llama, True, True),
        (tiny_gpt2, True, True),
        (lambda: _IgnoresLayout(tiny_llama()), True, False),
        (tiny_llama, False, False),
    ],
    ids=["llama", "gpt2", "ignores-layout", "packed=False"],
)
def test_multiple_choice_accuracy_and_logprob(build, pack, packed):
    """Packed rows (prompt once, options in blocks) and the per-option fallback both give the
    definition: options scored one full forward each."""
    model = build()
    questions = ids(E=3, seq=5, seed=3)
    options = [[[10], [11, 12], [13]], [[14], [15], [16, 17]], [[18], [19], [20]]]
    answers = [1, 0, 2]
    with torch.no_grad():
        option_logp = torch.zeros(3, 3, dtype=torch.float64)
        for q in range(3):
            for k, option in enumerate(options[q]):
                seq = torch.cat([questions[q], torch.tensor(option)])
                logp = torch.log_softmax(logits_of(model(input_ids=seq[None]))[0].double(), -1)
                option_logp[q, k] = sum(logp[4 + i, tok] for i, tok in enumerate(option))
    for metric, expected in (
        ("accuracy", (option_logp.argmax(-1) == torch.tensor(answers)).double().mean()),
        ("logprob", torch.log_softmax(option_logp, -1)[range(3), answers].mean()),
    ):
        value = MultipleChoice(options, answers, metric=metric, packed=pack)
        scores, x, _ = run(value, model, questions)
        assert len(x["input_ids"]) == (3 if packed else 9)
        assert torch.isclose(value.reduce(scores[None])[0].double(), expected, atol=1e-4)
        per_question = {
            "accuracy": (option_logp.argmax(-1) == torch.tensor(answers)).double(),
            "logprob": torch.log_softmax(option_logp, -1)[range(3), answers],
        }[metric]
        got = value.per_example(scores[None])
        assert got.shape == (1, 3) and torch.allclose(got[0].double(), per_question, atol=1e-4)


def test_the_packed_layout_is_checked_on_the_longest_row():
    """Gemma 3's sliding window (4 tokens here) ignores the packed rows' mask beyond it: the
    check on the first question (2 prompt tokens) passed, and the second (10) was scored
    0.14 off. The check now runs on the longest row, and both match one forward per option."""
    model = tiny_gemma3()
    questions = ids(E=2, seq=10, seed=3)
    attended = torch.ones(2, 10, dtype=torch.long)
    attended[0, 2:] = 0  # the first question has two tokens
    options = [[[10], [11]], [[14, 15, 16], [17, 18, 19]]]
    with torch.no_grad():
        option_logp = torch.zeros(2, 2, dtype=torch.float64)
        for q, length in enumerate((2, 10)):
            for k, option in enumerate(options[q]):
                seq = torch.cat([questions[q, :length], torch.tensor(option)])
                logp = torch.log_softmax(logits_of(model(input_ids=seq[None]))[0].double(), -1)
                option_logp[q, k] = sum(logp[length - 1 + i, tok] for i, tok in enumerate(option))
    value = MultipleChoice(options, [0, 1])
    scores, _, _ = run(value, model, {"input_ids": questions, "attention_mask": attended})
    expected = torch.log_softmax(option_logp, -1)[range(2), [0, 1]]
    assert torch.allclose(value.per_example(scores[None])[0].double(), expected, atol=1e-4)


def test_a_tie_between_options_is_not_a_right_answer():
    """Accuracy took the first of tied options as the answer: a model that cannot tell two
    options apart scored 1 where the answer was option 0 and 0 where it was option 1."""
    value = MultipleChoice([[[1], [2], [3]]] * 3, [0, 1, 2], metric="accuracy")
    per_option = torch.tensor([[-1.0, -1.0, -3.0], [-1.0, -1.0, -3.0], [-2.0, -3.0, -1.0]])
    assert value._metric(per_option, value.answers).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: MultipleChoice([[[1], [2]], [[3]]], [0, 0]), "same number K"),
        (lambda: MultipleChoice([[[1]], [[3]]], [0, 0]), "K >= 2"),
        (lambda: MultipleChoice([[[1], []]], [0]), "at least one token"),
        (lambda: MultipleChoice([[[1], [2]]], [2]), r"option indices in \[0, 2\)"),
        (lambda: MultipleChoice([[[1], [2]]], [0], metric="f1"), "metric must be"),
        (lambda: LogLikelihood(max_new_tokens=0), "max_new_tokens must be >= 1"),
    ],
)
def test_bad_value_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_causal_values_reject_unexpected_input_keys():
    with pytest.raises(ValueError, match="input_ids and attention_mask only"):
        run(LogLikelihood(), tiny_gpt2(), {"input_ids": ids(), "token_type_ids": ids()})


def test_default_reduce_is_the_mean_over_examples():
    scores = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    assert torch.equal(ClassLogit().reduce(scores), torch.tensor([3.0, 1.0]))
    assert torch.equal(ClassLogit().per_example(scores), scores)


def test_a_subclass_s_own_settings_join_the_inherited_fingerprint():
    """A subclass inheriting ClassLogit's repr was fingerprinted by it alone: its own setting
    (a temperature) was left out, and the cache served one temperature's outputs for another."""

    class Tempered(ClassLogit):
        def __init__(self, temperature):
            super().__init__()
            self.temperature = temperature

    assert Tempered(1.0).fingerprint() != Tempered(10.0).fingerprint()
    assert Tempered(1.0).fingerprint() == Tempered(1.0).fingerprint()
    assert Tempered(1.0).fingerprint().startswith("Tempered(full-input prediction, log_odds=False) settings#")
    assert ClassLogit().fingerprint() == "ClassLogit(full-input prediction, log_odds=False)"


def test_fingerprints_tell_settings_apart():
    fps = {
        ClassLogit().fingerprint(),
        ClassLogit(log_odds=True).fingerprint(),
        Margin().fingerprint(),
        ClassLogit([1, 2]).fingerprint(),
        LogLikelihood().fingerprint(),
        LogLikelihood(per_token=False).fingerprint(),
        LogLikelihood(answers=[[1]]).fingerprint(),
        MultipleChoice([[[1], [2]]], [0]).fingerprint(),
        MultipleChoice([[[1], [2]]], [1]).fingerprint(),
        MultipleChoice([[[1], [2]]], [1], packed=False).fingerprint(),
        MultipleChoice([[[1], [2]]], [1], metric="accuracy").fingerprint(),
    }
    assert len(fps) == 11
    assert np.all([isinstance(f, str) for f in fps])


@pytest.mark.parametrize("build", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])
def test_multiple_choice_projects_only_the_scored_positions_onto_the_vocabulary(build):
    """The output embedding sees one hidden state per option token (not every position after
    the first scored one, nor padding), and the log-probabilities stay those of full logits."""
    model = build()
    questions = ids(E=2, seq=7, seed=4)
    options = [[[10], [11, 12, 13]], [[14, 15], [16]]]
    value = MultipleChoice(options, [1, 0], metric="logprob")
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(tuple(a[0].shape)))
    try:
        scores = run(value, model, questions)[0]
    finally:
        handle.remove()
    tokens = sum(len(o) for opts in options for o in opts)
    assert seen[-1][:2] == (1, tokens)  # the scoring pass: the option tokens of every question, no padding
    full = MultipleChoice(options, [1, 0], metric="logprob", packed=False)
    assert torch.allclose(
        value.per_example(scores[None]), full.per_example(run(full, model, questions)[0][None]), atol=1e-5
    )


def test_a_float64_model_is_scored_in_float64():
    """LogLikelihood and MultipleChoice scored in float32 whatever the model: a float64
    model's answer log-probability was the float32 rounding of the right one, and a head's
    effect of 1.6e-9 read 0."""
    model = tiny_gpt2().double()
    prompt = ids(E=1, seq=5)
    with torch.no_grad():
        generated = model.generate(prompt, max_new_tokens=3, do_sample=False, pad_token_id=0)
        logp = torch.log_softmax(model(generated).logits[0], -1)
    expected = sum(logp[4 + i, tok] for i, tok in enumerate(generated[0, 5:]))
    score, _, _ = run(LogLikelihood(max_new_tokens=3, per_token=False), model, {"input_ids": prompt})
    assert score.dtype == torch.float64 and abs(score[0].item() - expected.item()) < 1e-12
    options = [torch.tensor([7, 8]), torch.tensor([9])]
    choice = MultipleChoice(options=[options], answers=[0])
    scores, _, _ = run(choice, model, prompt)
    assert scores.dtype == torch.float64


def test_an_example_without_prompt_tokens_is_refused():
    """An empty prompt scored its answer from position -1, shifting every other row's logits
    by one (an example's log-likelihood -4.268 read -4.089 beside it)."""
    model = tiny_gpt2()
    inputs = {
        "input_ids": torch.tensor([[10, 11, 12], [0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1], [0, 0, 0]]),
    }
    with pytest.raises(ValueError, match=r"examples \[1\] have no prompt token"):
        run(LogLikelihood(answers=[[7], [8]]), model, inputs)
    with pytest.raises(ValueError, match=r"examples \[1\] have no prompt token"):
        run(MultipleChoice(options=[[[7], [8]], [[7], [9]]], answers=[0, 1]), model, inputs)


def test_the_greedy_answer_ends_at_the_generation_configs_end_token():
    """Instruction models keep their end of turn in generation_config only: the answer ran
    past it (6 tokens where generate stops at 3)."""
    model = tiny_gpt2()
    model.config.eos_token_id = None
    for seed in range(50):  # a prompt whose free answer holds a second, different token
        prompt = ids(E=1, seq=5, seed=seed)
        with torch.no_grad():
            free = model.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None)
        free = free[0, 5:].tolist()
        k = next((k for k in range(1, 6) if free[k] not in free[:k]), None)
        if k is not None:
            break
    model.generation_config.eos_token_id = free[k]  # ends the turn
    _, x, t = run(LogLikelihood(max_new_tokens=6), model, {"input_ids": prompt})
    assert int(t["scored"][0].sum()) == k + 1 and x["input_ids"][0, 5 : 6 + k].tolist() == free[: k + 1]


def test_a_margin_or_log_odds_of_one_output_is_refused():
    """With one output (a regression or score head) every other logit is -inf: the margin
    and the log-odds were +inf for every mask, silently."""
    logits, labels = torch.tensor([[0.8], [0.6]]), torch.tensor([0, 0])
    with pytest.raises(ValueError, match="the model has one output"):
        margin(logits, labels)
    from compattr.query.values import _class_score

    with pytest.raises(ValueError, match="log odds compares a class with the others"):
        _class_score(logits, labels, "log_odds")
    assert torch.equal(_class_score(logits, labels, "logit"), torch.tensor([0.8, 0.6]))


def test_a_classifier_that_pools_its_first_token_refuses_left_padding():
    """BERT's pooler reads token 0, the padding of a left-padded row: its logits were 0.4 off
    each text alone, silently. A right-padded batch is read as each text alone."""
    from compattr._testing import word_tokenizer

    model, tokenizer = tiny_bert(), word_tokenizer()
    texts = ["w1 w2 w3 w4 w5", "w9 w8", "w10 w11 w12"]
    with torch.no_grad():
        alone = torch.stack([model(**tokenizer(t, return_tensors="pt")).logits[0] for t in texts])
    tokenizer.padding_side = "left"
    with pytest.raises(ValueError, match="change with its left padding.*Pad on the right"):
        run(ClassLogit([0, 1, 2]), model, dict(tokenizer(texts, return_tensors="pt", padding=True)))
    tokenizer.padding_side = "right"
    score, _, _ = run(ClassLogit([0, 1, 2]), model, dict(tokenizer(texts, return_tensors="pt", padding=True)))
    torch.testing.assert_close(score, alone[torch.arange(3), torch.tensor([0, 1, 2])], atol=1e-5, rtol=0)
