"""Value functions: turn a model's outputs on masked inputs into the scalar f(S) to explain.

A :class:`Value` works in three steps, all on batches whose first axis is the examples:

``prepare(model, inputs, batch_size) -> (inputs, targets)``
    Once, on the unmasked model: fix what the value is measured against (the class predicted
    on the full input, the full-input answer's tokens) and, if needed, extend the inputs
    (append the answer or the options). ``targets`` is a tensor or a mapping of tensors with
    the same examples on the first axis.
``score(model, inputs, targets) -> (B,)``
    One forward pass on a batch of rows (possibly masked), one score per row.
``per_example(scores) -> (m, Q)`` and ``reduce(scores) -> (m,)``
    Scores ``(m, E)`` of ``m`` masks on ``E`` prepared rows to one output per example and
    mask (default: the rows themselves), and to one output per mask (the mean of those).

:class:`compattr.query.Query` drives the three steps for any feature set; subclass
:class:`Value` to measure something else.

Values here
-----------
:class:`ClassLogit`
    Logit (or log-odds) of the class predicted on the full input.
:class:`Margin`
    Logit of the true (or full-input) class minus the highest other logit.
:class:`LogLikelihood`
    Log-likelihood of the full-input answer of a causal LM (per token: the negative
    log-perplexity).
:class:`MultipleChoice`
    Accuracy, or mean correct-option log-probability, over a question set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from .._validation import as_labels, check_labels
from ..features.base import (
    Inputs,
    attention_mask_of,
    call_model,
    digest,
    forward_takes,
    map_inputs,
    n_examples,
    with_positions,
)

Targets = Any


class Value:
    """Base class: ``prepare`` once, ``score`` per batch, ``reduce`` over examples.

    ``per_example`` turns a batch's scores into one output per example (a question's
    accuracy, an image's class logit); ``reduce`` averages them into the value.
    """

    def prepare(self, model: torch.nn.Module, inputs: Inputs, batch_size: int) -> tuple[Inputs, Targets]:
        """Inputs to score and the targets they are scored against (computed unmasked)."""
        raise NotImplementedError

    def score(self, model: torch.nn.Module, inputs: Inputs, targets: Targets) -> torch.Tensor:
        """``(B,)`` float scores of one forward pass over ``B`` rows."""
        raise NotImplementedError

    def per_example(self, scores: torch.Tensor) -> torch.Tensor:
        """``(m, E)`` scores of every scored row under each mask to ``(m, Q)`` outputs, one
        per example (the rows themselves, unless one example spans several rows)."""
        return scores

    def reduce(self, scores: torch.Tensor) -> torch.Tensor:
        """``(m, E)`` scores of every scored row under each mask to ``(m,)`` outputs: the
        mean of :meth:`per_example`."""
        return self.per_example(scores).mean(-1)

    def fingerprint(self) -> str:
        """Identifies the value function and its settings (used by the query cache).

        The ``repr`` of a class that defines one itself; otherwise a digest of its public
        attributes (``vars``, names not starting with ``_``; the same in every process) after
        the inherited ``repr`` (a subclass may hold settings its parent's ``repr`` leaves
        out) or the class's qualified name. Override it when a setting's ``repr`` holds a
        memory address.
        """
        owner = next(c for c in type(self).__mro__ if "__repr__" in vars(c))
        if owner is type(self):
            return repr(self)
        settings = {name: v for name, v in vars(self).items() if not name.startswith("_")}
        if owner is object:
            return f"{type(self).__qualname__}(settings#{digest(settings)})"
        return f"{self!r} settings#{digest(settings)}"


def describe(measured: Any) -> str:
    """A short name of what a value, or a set function, measures: ``"MultipleChoice
    (logprob)"``, ``"ClassLogit"``. A set function's is its ``value``'s where it has one (a
    :class:`~compattr.query.MaskedModel`'s), else its own class; a value's is its class, with
    its ``metric`` where it has one."""
    value = getattr(measured, "value", measured)
    metric = getattr(value, "metric", None)
    return type(value).__name__ + ("" if metric is None else f" ({metric})")


def logits_of(output: Any) -> torch.Tensor:
    """The logits of a model output: ``.logits``, a tensor, or the first element of a tuple."""
    if isinstance(output, torch.Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[0]
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"cannot find logits in a model output of type {type(output).__name__}.")
    return logits


def sequence_logits(
    model: torch.nn.Module,
    inputs: Inputs,
    first: int,
    at: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits of a sequence model's output: ``(B, S - first, V)`` at positions ``first ..``,
    or ``(P, V)`` at the ``P`` (row, position) pairs ``at`` (two ``(P,)`` index tensors,
    positions ``>= first``, repeats allowed): ``logits[rows, positions]`` of the full output.

    Causal LMs that take ``logits_to_keep`` (Hugging Face) compute only positions ``first ..``,
    which saves the language-model head on the others. With ``at``, a model with an
    output-embedding module (``get_output_embeddings()``) projects only those pairs' hidden
    states onto the vocabulary (a forward pre-hook gathers the head's input), so padding and
    unscored positions cost nothing. Left-padded rows get position ids counted from their
    first attended token (:func:`~compattr.features.base.with_positions`).
    """
    inputs = with_positions(model, inputs)
    takes = forward_takes(type(model), "logits_to_keep")
    ids = inputs if isinstance(inputs, torch.Tensor) else inputs["input_ids"]
    kwargs = {"logits_to_keep": ids.shape[1] - first} if takes else {}
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if at is None or not isinstance(head, torch.nn.Module):
        logits = logits_of(call_model(model, inputs, **kwargs))[:, 0 if takes else first :]
        if at is None:
            return logits
        return logits[at[0].to(logits.device), at[1].to(logits.device) - first]
    rows, offsets = at[0], at[1] - (first if takes else 0)
    calls: list[torch.Size] = []

    def gather(module, args):
        hidden = args[0]
        if hidden.ndim != 3 or hidden.shape[0] != ids.shape[0] or calls:
            raise RuntimeError(
                f"the output embedding of {type(model).__name__} was called on {tuple(hidden.shape)} "
                f"(call {len(calls) + 1}); expected one call on ({ids.shape[0]}, positions, hidden)."
            )
        calls.append(hidden.shape)
        return (hidden[rows.to(hidden.device), offsets.to(hidden.device)][None], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        logits = logits_of(call_model(model, inputs, **kwargs))
    finally:
        handle.remove()
    if not calls or logits.shape[:2] != (1, len(rows)):
        raise RuntimeError(
            f"{type(model).__name__} did not project the gathered positions through its output embedding "
            f"(logits {tuple(logits.shape)} for {len(rows)} positions)."
        )
    return logits[0]


def _in_batches(fn, inputs: Inputs, batch_size: int) -> torch.Tensor:
    E = n_examples(inputs)
    return torch.cat([fn(map_inputs(lambda t: t[i : i + batch_size], inputs)) for i in range(0, E, batch_size)])


# --------------------------------------------------------------------------- classifiers
def margin(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of ``labels`` minus the highest other logit; ``logits (..., C)``, ``labels (...)``."""
    return _class_score(logits, labels, "margin")


def _scoring_precision(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` in float32 (half precision in, float32 out), or float64 as they are: a
    float64 model's small effects survive its scores."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _class_score(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    logits = _scoring_precision(logits)
    labels = labels.long().to(logits.device)
    chosen = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    if kind == "logit":
        return chosen
    if logits.shape[-1] < 2:
        raise ValueError(
            f"a {kind.replace('_', ' ')} compares a class with the others, but the model has one output "
            "(a regression or score head): use ClassLogit() for its value."
        )
    others = logits.scatter(-1, labels.unsqueeze(-1), float("-inf"))
    rest = others.amax(-1) if kind == "margin" else others.logsumexp(-1)
    return chosen - rest


def _check_left_padding_is_read_through(model: torch.nn.Module, inputs: Inputs) -> None:
    """ValueError where a left-padded row's class logits move with its padding: a classifier
    that pools its first token (BERT's pooler, RoBERTa's head) reads the padding there. One
    such row is scored with its padding and without (two forwards, once)."""
    mask = attention_mask_of(inputs)
    if mask is None or mask.ndim != 2 or isinstance(inputs, torch.Tensor):
        return
    padded = torch.nonzero((mask[:, 0] == 0) & mask.bool().any(1)).flatten()
    if not len(padded):
        return
    r = int(padded[0])
    start = int(mask[r].bool().int().argmax())
    E, S = mask.shape
    # row r of every per-example tensor (inputs hold examples first), then its tokens from start
    row = map_inputs(lambda t: t[r : r + 1] if t.ndim and t.shape[0] == E else t, inputs)
    trimmed = map_inputs(lambda t: t[:, start:] if t.ndim >= 2 and t.shape[:2] == (1, S) else t, row)
    with torch.no_grad():
        with_padding, without = class_logits(model, row).float(), class_logits(model, trimmed).float()
    scale = float(without.abs().max()) if without.numel() else 0.0
    if not torch.allclose(with_padding, without, rtol=0.0, atol=1e-2 * max(1.0, scale)):
        raise ValueError(
            f"{type(model).__name__}'s logits of row {r} change with its left padding (by up to "
            f"{float((with_padding - without).abs().max()):.3g}): it reads a position the padding "
            "fills (a classifier pooling its first token). Pad on the right "
            "(tokenizer.padding_side = 'right')."
        )


def class_logits(model: torch.nn.Module, inputs: Inputs) -> torch.Tensor:
    """Per-example logits ``(B, C)`` of a classifier, or of a sequence model at each row's
    last attended token (the next-token prediction).

    Left-padded rows get position ids counted from their first attended token
    (:func:`~compattr.features.base.with_positions`), as a row without padding has them."""
    ids = inputs if isinstance(inputs, torch.Tensor) else inputs.get("input_ids")
    mask = attention_mask_of(inputs)
    inputs = with_positions(model, inputs)
    if ids is None or ids.ndim != 2:
        last = None
    elif mask is None:
        last = torch.full((ids.shape[0],), ids.shape[1] - 1, device=ids.device)
    else:
        last = (torch.arange(mask.shape[1], device=mask.device) * mask.bool()).amax(1)
    if last is not None and forward_takes(type(model), "logits_to_keep"):
        first = int(last.min())
        logits = sequence_logits(model, inputs, first)
        last = last - first
    else:
        logits = logits_of(call_model(model, inputs))
    if logits.ndim == 2:
        return logits
    if logits.ndim != 3 or last is None:
        raise ValueError(f"expected logits of shape (B, C) or (B, S, C), got {tuple(logits.shape)}.")
    return logits[torch.arange(logits.shape[0], device=logits.device), last.to(logits.device)]


class _ClassValue(Value):
    """A score of one class per example, read from classifier (or last-token) logits."""

    _kind = "logit"

    def __init__(self, labels: Sequence[int] | torch.Tensor | None = None):
        self.labels = None if labels is None else torch.as_tensor(as_labels(labels))

    def prepare(self, model, inputs, batch_size):
        E = n_examples(inputs)
        _check_left_padding_is_read_through(model, inputs)
        if self.labels is not None:
            if self.labels.shape != (E,):
                raise ValueError(f"got {tuple(self.labels.shape)} labels for {E} examples.")
            return inputs, self.labels.to(_device(inputs))
        predict = lambda x: class_logits(model, x).argmax(-1)
        return inputs, _in_batches(predict, inputs, batch_size)

    def score(self, model, inputs, targets):
        logits = class_logits(model, inputs)
        if self.labels is not None:  # the prediction is always a class; given labels may not be
            check_labels(self.labels.numpy(), logits.shape[-1])
        return _class_score(logits, targets, self._kind)

    def __repr__(self) -> str:
        labels = "full-input prediction" if self.labels is None else f"labels#{digest(self.labels)}"
        return f"{type(self).__name__}({labels}{self._extra()})"

    def _extra(self) -> str:
        return ""


class ClassLogit(_ClassValue):
    """Logit of the class predicted on the full input (or of given ``labels``).

    Parameters
    ----------
    labels : (E,) ints, optional
        Class per example; default the argmax on the unmasked input. A label outside the
        model's ``C`` classes (its vocabulary, for a language model) is a ``ValueError``
        naming the label and ``C``.
    log_odds : bool
        Score ``log p / (1 - p)`` of that class instead of its logit.

    Works for classifiers with logits ``(B, C)`` and for sequence models ``(B, S, C)``, read
    at the last attended token (the next-token prediction).
    """

    def __init__(self, labels=None, log_odds: bool = False):
        super().__init__(labels)
        self.log_odds = bool(log_odds)
        self._kind = "log_odds" if log_odds else "logit"

    __repr__ = _ClassValue.__repr__  # names every setting (the fingerprint)

    def _extra(self) -> str:
        return f", log_odds={self.log_odds}"


class Margin(_ClassValue):
    """Logit of the true class (``labels``; default the full-input prediction) minus the
    highest other logit: positive when the model is right."""

    _kind = "margin"
    __repr__ = _ClassValue.__repr__  # names every setting (the fingerprint)


# --------------------------------------------------------------------------- causal LMs
def _device(inputs: Inputs) -> torch.device:
    t = inputs if isinstance(inputs, torch.Tensor) else next(v for v in inputs.values() if isinstance(v, torch.Tensor))
    return t.device


def _end_tokens(model: torch.nn.Module) -> set[int]:
    """The tokens that end a greedy answer: the model configuration's ``eos_token_id`` and
    its generation configuration's (an instruction model's end of turn may be there only)."""
    ends: set[int] = set()
    for config in (getattr(model, "config", None), getattr(model, "generation_config", None)):
        eos = getattr(config, "eos_token_id", None)
        ends |= set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    return ends


def _prompts(inputs: Inputs) -> list[torch.Tensor]:
    """Each example's token ids without padding; ``ValueError`` where one has none (its
    answer would be scored from no position, shifting every other row's by one)."""
    prompts = _unpadded(inputs)
    empty = [e for e, p in enumerate(prompts) if len(p) == 0]
    if empty:
        raise ValueError(f"examples {empty[:5]} have no prompt token: an answer is scored after at least one.")
    return prompts


def _unpadded(inputs: Inputs) -> list[torch.Tensor]:
    if isinstance(inputs, torch.Tensor):
        return list(inputs)
    # A single segment's token_type_ids (all zero, as some tokenizers return) carry nothing.
    single_segment = "token_type_ids" in inputs and not inputs["token_type_ids"].any()
    extra = set(inputs) - {"input_ids", "attention_mask"} - ({"token_type_ids"} if single_segment else set())
    if "input_ids" not in inputs or extra:
        raise ValueError(
            "causal-LM values take input_ids and attention_mask only (and all-zero token_type_ids), "
            f"got keys {sorted(inputs)}."
        )
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    if mask is None:
        return list(ids)
    return [row[keep.bool()] for row, keep in zip(ids, mask)]


def _with_continuations(prompts: list[torch.Tensor], continuations: list[torch.Tensor]) -> tuple[dict, dict]:
    """Right-padded ``prompt + continuation`` rows and the positions of the continuations."""
    rows = [torch.cat([p, c.to(p.device)]) for p, c in zip(prompts, continuations)]
    L = max(len(r) for r in rows)
    device = prompts[0].device
    ids = torch.zeros(len(rows), L, dtype=torch.long, device=device)
    attention = torch.zeros(len(rows), L, dtype=torch.long, device=device)
    scored = torch.zeros(len(rows), L, dtype=torch.bool, device=device)
    for i, (p, r) in enumerate(zip(prompts, rows)):
        ids[i, : len(r)] = r
        attention[i, : len(r)] = 1
        scored[i, len(p) : len(r)] = True
    return {"input_ids": ids, "attention_mask": attention}, {"scored": scored}


def _continuation_logprob(model, inputs: Mapping[str, Any], scored: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of log-probabilities of the scored tokens per row, and their number."""
    first = int(scored.any(0).nonzero()[0]) - 1  # logits at p - 1 predict the token at p
    logits = sequence_logits(model, inputs, first)
    ids = inputs["input_ids"].to(logits.device)
    target = scored[:, first + 1 :].to(logits.device)
    rows, cols = target.nonzero(as_tuple=True)
    logp = torch.log_softmax(_scoring_precision(logits[rows, cols]), -1)
    picked = logp.gather(-1, ids[rows, first + 1 + cols].unsqueeze(-1)).squeeze(-1)
    total = torch.zeros(ids.shape[0], device=logits.device, dtype=logp.dtype).index_add_(0, rows, picked)
    return total, target.sum(1).to(logp.dtype)


def _greedy(model, prompt: torch.Tensor, max_new_tokens: int, eos: set[int]) -> torch.Tensor:
    ids = prompt
    for _ in range(max_new_tokens):
        nxt = logits_of(call_model(model, {"input_ids": ids[None]}))[0, -1].argmax()
        ids = torch.cat([ids, nxt.view(1)])
        if int(nxt) in eos:
            break
    return ids[len(prompt) :]


class LogLikelihood(Value):
    """Log-likelihood of the full-input answer of a causal LM under masked inputs or heads.

    Parameters
    ----------
    answers : list of token-id sequences, optional
        The answer per example; default: greedy decoding of ``max_new_tokens`` tokens (up to
        EOS) on the unmasked model.
    max_new_tokens : int
        Length of the greedy answer.
    per_token : bool
        Average over the answer's tokens (the negative log-perplexity) instead of summing.

    Inputs are ``input_ids`` (+ ``attention_mask``), left or right padded.

    Attributes
    ----------
    output_range : (float, float)
        ``(-inf, 0)``: a log-likelihood is never positive.
    """

    output_range = (-math.inf, 0.0)

    def __init__(self, answers: Sequence[Sequence[int]] | None = None, max_new_tokens: int = 8, per_token: bool = True):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
        self.answers = None if answers is None else [torch.as_tensor(a).long() for a in answers]
        self.max_new_tokens = int(max_new_tokens)
        self.per_token = bool(per_token)

    def prepare(self, model, inputs, batch_size):
        prompts = _prompts(inputs)
        if self.answers is not None:
            if len(self.answers) != len(prompts):
                raise ValueError(f"got {len(self.answers)} answers for {len(prompts)} examples.")
            answers = self.answers
        else:
            answers = [_greedy(model, p, self.max_new_tokens, _end_tokens(model)) for p in prompts]
        if any(len(a) == 0 for a in answers):
            raise ValueError("every answer needs at least one token.")
        return _with_continuations(prompts, answers)

    def score(self, model, inputs, targets):
        total, count = _continuation_logprob(model, inputs, targets["scored"])
        return total / count if self.per_token else total

    def __repr__(self) -> str:
        answers = "greedy" if self.answers is None else f"given#{digest(list(self.answers))}"
        return f"LogLikelihood(answers={answers}, max_new_tokens={self.max_new_tokens}, per_token={self.per_token})"


class MultipleChoice(Value):
    """Accuracy or mean correct-option log-probability of a causal LM over a question set.

    An option's score is the summed log-probability of its tokens after the question.

    Each question is one row ``[prompt, option 1, ..., option K]`` with a block attention mask
    (every option sees the prompt and its own earlier tokens, nothing else) and position ids
    that restart each option where the prompt ends: the prompt runs once instead of ``K``
    times. ``prepare`` checks this packed layout against one row per (question, option) on
    the unmasked model, on the question with the longest row (a sliding-window attention,
    as in Gemma or Mistral, ignores the custom mask on rows longer than its window), and
    falls back to those rows for models that ignore custom attention masks or position ids.

    Parameters
    ----------
    options : list (per question) of K token-id sequences
        The options; the same ``K`` for every question.
    answers : (Q,) ints
        Index of the correct option per question.
    metric : {"logprob", "accuracy"}
        ``"accuracy"``: fraction of questions whose correct option scores above every other
        (a tie is not an answer: the first option would otherwise win every tie);
        ``"logprob"`` (smoother): mean over questions of the log-probability of the correct
        option normalised over the ``K`` options.
    packed : bool
        Use the packed layout when the check passes (default); False always scores one row
        per (question, option).

    Attributes
    ----------
    output_range : (float, float)
        The values the metric can take (``RANGES[metric]``): ``(0, 1)`` for accuracy,
        ``(-inf, 0)`` for a log-probability.
    """

    RANGES: ClassVar[dict[str, tuple[float, float]]] = {"logprob": (-math.inf, 0.0), "accuracy": (0.0, 1.0)}

    def __init__(
        self,
        options: Sequence[Sequence[Sequence[int]]],
        answers: Sequence[int],
        metric: str = "logprob",
        packed: bool = True,
    ):
        if metric not in ("logprob", "accuracy"):
            raise ValueError(f"metric must be 'logprob' or 'accuracy', got {metric!r}.")
        K = {len(o) for o in options}
        if len(K) != 1 or min(K) < 2:
            raise ValueError(f"every question needs the same number K >= 2 of options, got {sorted(K)}.")
        self.options = [[torch.as_tensor(o).long() for o in opts] for opts in options]
        if any(len(o) == 0 for opts in self.options for o in opts):
            raise ValueError("every option needs at least one token.")
        self.answers = torch.as_tensor(answers).long()
        self.K = K.pop()
        if self.answers.shape != (len(self.options),) or not ((self.answers >= 0) & (self.answers < self.K)).all():
            raise ValueError(f"answers must be {len(self.options)} option indices in [0, {self.K}).")
        self.metric = metric
        self.packed = bool(packed)

    @property
    def output_range(self) -> tuple[float, float]:
        return self.RANGES[self.metric]

    def prepare(self, model, inputs, batch_size):
        prompts = _prompts(inputs)
        if len(prompts) != len(self.options):
            raise ValueError(f"got {len(prompts)} questions for {len(self.options)} option lists.")

        def per_option(questions: range) -> tuple[dict, dict]:  # one row per (question, option)
            return _with_continuations(
                [prompts[q] for q in questions for _ in range(self.K)], [o for q in questions for o in self.options[q]]
            )

        everything = range(len(prompts))
        if not self.packed:
            return per_option(everything)
        packed = _packed_options(prompts, self.options, self.answers)
        # checked on the longest row: a sliding window (Gemma, Mistral) shows on long rows only
        sizes = [len(p) + sum(len(o) for o in opts) for p, opts in zip(prompts, self.options)]
        longest = max(range(len(sizes)), key=sizes.__getitem__)
        exact = self._packing_is_exact(model, packed, longest, per_option(range(longest, longest + 1)))
        return packed if exact else per_option(everything)

    def score(self, model, inputs, targets):
        if "scored" in targets:  # one row per (question, option): the option's log-probability
            return _continuation_logprob(model, inputs, targets["scored"])[0]
        return self._metric(_option_logprobs(model, inputs, targets, self.K), targets["answer"])

    def per_example(self, scores):
        """``(m, Q)`` scores per question (an accuracy's 0 or 1, a log-probability)."""
        if scores.shape[-1] == len(self.options):  # packed rows: one score per question (K >= 2)
            return scores
        per_option = scores.view(scores.shape[0], -1, self.K)
        answers = self.answers.to(scores.device).expand(scores.shape[0], -1)
        return self._metric(per_option.flatten(0, 1), answers.flatten()).view(scores.shape[0], -1)

    def _metric(self, per_option: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` option log-probabilities and ``(B,)`` answers to ``(B,)`` scores."""
        answers = answers.to(per_option.device)
        if self.metric == "accuracy":  # right where the answer scores above every other option
            right = per_option.gather(-1, answers.unsqueeze(-1))
            others = per_option.scatter(-1, answers.unsqueeze(-1), float("-inf"))
            return (right.squeeze(-1) > others.amax(-1)).float()
        return torch.log_softmax(per_option, -1).gather(-1, answers.unsqueeze(-1)).squeeze(-1)

    def _packing_is_exact(self, model, packed, q: int, options_of_q) -> bool:
        """Whether the packed row of question ``q`` gives the log-probabilities of its
        per-option rows ``options_of_q`` (to rounding); False also when the model rejects the
        packed inputs."""

        def row(z: Mapping[str, Any]) -> dict[str, Any]:
            return map_inputs(lambda t: t[q : q + 1], z)

        try:
            got = _option_logprobs(model, row(packed[0]), row(packed[1]), self.K)
        except (TypeError, ValueError, RuntimeError, IndexError):
            return False
        want = _continuation_logprob(model, options_of_q[0], options_of_q[1]["scored"])[0]
        tolerance = 1e-3 if _dtype(model) == torch.float32 else 0.1  # got is float32 either way
        return bool(torch.allclose(got.flatten().double(), want.double(), atol=tolerance, rtol=0))

    def __repr__(self) -> str:
        """Also the query cache's fingerprint: ``packed=False`` is named (the packed rows' sums
        may differ from one row per option in the last bits), the default is not, so caches
        written before the option existed stay valid."""
        options = digest([list(o) for o in self.options])
        return (
            f"MultipleChoice(Q={len(self.options)}, K={self.K}, metric={self.metric!r}, "
            f"options#{options}, answers#{digest(self.answers)}{'' if self.packed else ', packed=False'})"
        )


def _dtype(model: torch.nn.Module) -> torch.dtype:
    parameter = next(model.parameters(), None)
    return torch.float32 if parameter is None else parameter.dtype


def _packed_options(
    prompts: list[torch.Tensor], options: list[list[torch.Tensor]], answers: torch.Tensor
) -> tuple[dict, dict]:
    """One row per question: the prompt then its K options, each option attending to the prompt
    and to itself, with positions continuing the prompt's.

    Returns
    -------
    inputs : dict
        ``input_ids`` and ``position_ids`` (Q, T); ``attention_mask`` (Q, 1, T, T) bool
        (True = may attend). Padding attends to itself only.
    targets : dict
        ``predictor`` (Q, N): the position whose logits predict each option token; ``token``
        (Q, N) its id; ``option`` (Q, N) its option, -1 for padding; ``answer`` (Q,).
    """
    device = prompts[0].device
    Q = len(prompts)
    lengths = [len(p) + sum(len(o) for o in opts) for p, opts in zip(prompts, options)]
    T, N = max(lengths), max(sum(len(o) for o in opts) for opts in options)
    ids = torch.zeros(Q, T, dtype=torch.long)
    positions = torch.zeros(Q, T, dtype=torch.long)
    block = torch.full((Q, T), -1, dtype=torch.long)  # -1: prompt, k: option k, -2: padding
    predictor = torch.zeros(Q, N, dtype=torch.long)
    token = torch.zeros(Q, N, dtype=torch.long)
    option = torch.full((Q, N), -1, dtype=torch.long)
    for q, (prompt, opts) in enumerate(zip(prompts, options)):
        P = len(prompt)
        ids[q, :P] = prompt.cpu()
        positions[q, :P] = torch.arange(P)
        start, scored = P, 0
        for k, o in enumerate(opts):
            end = start + len(o)
            ids[q, start:end] = o
            positions[q, start:end] = P + torch.arange(len(o))
            block[q, start:end] = k
            predictor[q, scored : scored + len(o)] = torch.cat([torch.tensor([P - 1]), torch.arange(start, end - 1)])
            token[q, scored : scored + len(o)] = o
            option[q, scored : scored + len(o)] = k
            start, scored = end, scored + len(o)
        block[q, start:] = -2
    index = torch.arange(T)
    causal = index[:, None] >= index[None, :]
    key_block, query_block = block[:, None, :], block[:, :, None]
    allowed = causal & ((key_block == -1) & (query_block != -2) | (key_block == query_block) & (query_block >= 0))
    allowed |= torch.eye(T, dtype=torch.bool)  # padding sees itself: no empty softmax row
    inputs = {"input_ids": ids, "attention_mask": allowed[:, None], "position_ids": positions}
    targets = {"predictor": predictor, "token": token, "option": option, "answer": answers.clone()}
    to = lambda z: {k: v.to(device) for k, v in z.items()}
    return to(inputs), to(targets)


def _option_logprobs(model, inputs: Mapping[str, Any], targets: Mapping[str, Any], K: int) -> torch.Tensor:
    """``(B, K)`` summed log-probabilities of each option's tokens in packed rows."""
    predictor, option, token = targets["predictor"], targets["option"], targets["token"]
    scored = option >= 0  # (B, N): option tokens (the rest is padding)
    rows, slots = scored.nonzero(as_tuple=True)
    positions = predictor[rows, slots]
    logits = sequence_logits(model, inputs, int(positions.min()), (rows, positions))  # (P, V)
    logp = torch.log_softmax(_scoring_precision(logits), -1)
    picked = torch.zeros(option.shape, device=logits.device, dtype=logp.dtype)
    picked[rows.to(logits.device), slots.to(logits.device)] = logp.gather(
        -1, token[rows, slots].to(logits.device)[:, None]
    ).squeeze(-1)
    option = option.to(logits.device)
    return torch.zeros(option.shape[0], K, device=logits.device, dtype=logp.dtype).scatter_add_(
        1, option.clamp(min=0), picked
    )
