"""Multiple-choice question sets: build, split, tokenize, and measure accuracy under head masks.

A :class:`QuestionSet` holds prompts, ``K`` options per prompt and the index of the right
option. Each option is scored as the continuation ``prompt + sep + option``, so a cloze
("The capital of France is" + " Paris") and an MMLU-style lettered question ("...\\nAnswer:"
+ " B") are the same thing here.

Sources::

    qs = compattr.tasks.capitals()                          # offline, from countryinfo
    qs = compattr.tasks.from_jsonl("my_questions.jsonl")    # {"prompt", "options", "answer"}
    qs = compattr.tasks.from_dataset("cais/mmlu", "test", config="all")   # MMLU columns

Use::

    train, test = qs.split(train=120)                       # the paper's MMLU split
    inputs, value = train.encode(tokenizer)                 # -> compattr.explain(..., value, inputs)
    compattr.tasks.accuracy(model, tokenizer, test, heads, plan.kept)
"""

from __future__ import annotations

import json
import os
import string
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .._validation import check_int, is_int, range_note
from ..features import AttentionHeads
from ..optimize import (
    ROUND_TIME_LIMIT,
    MaskOracle,
    PruningPlan,
    ValueRangeWarning,
    best_of_n,
    best_subset,
    greedy_elimination,
    meets_group_minimum,
    single_feature_ablation,
    verified_plan,
)
from ..query import Query, run_queries
from ..query.values import MultipleChoice, describe
from .models import MissingAssetError
from .stats import paired_accuracy_intervals

COUNTRYINFO_PIN = "countryinfo==1.0.1"
_LETTERS = string.ascii_uppercase
#: The values each multiple-choice ``metric`` can take: an accuracy lies in [0, 1]; the
#: log-probability of the right option, normalised over the options, is at most 0.
METRIC_RANGES = MultipleChoice.RANGES


@dataclass(frozen=True)
class QuestionSet:
    """``Q`` multiple-choice questions with ``K`` options each.

    Attributes
    ----------
    prompts : tuple of Q str
        The text before the answer.
    options : tuple of Q tuples of K str
        The candidate answers; option ``k`` of question ``q`` is scored as the continuation
        ``sep + options[q][k]`` of ``prompts[q]``.
    answers : tuple of Q int
        Index in ``[0, K)`` of the right option.
    sep : str
        Joins a prompt and an option (default one space).
    """

    # any sequences; __post_init__ stores them as tuples
    prompts: Sequence[str]
    options: Sequence[Sequence[str]]
    answers: Sequence[int]
    sep: str = " "

    def __post_init__(self) -> None:
        if isinstance(self.prompts, str):
            raise ValueError("prompts must be a sequence of strings, not a string (it would be split into characters).")
        if isinstance(self.options, str) or any(isinstance(o, str) for o in self.options):
            raise ValueError(
                "options must be a sequence of option lists, not a string (it would be split into characters)."
            )
        object.__setattr__(self, "prompts", tuple(str(p) for p in self.prompts))
        object.__setattr__(self, "options", tuple(tuple(str(o) for o in opts) for opts in self.options))
        object.__setattr__(self, "answers", tuple(int(a) for a in self.answers))
        Q = len(self.prompts)
        if len(self.options) != Q or len(self.answers) != Q:
            raise ValueError(f"got {Q} prompts, {len(self.options)} option lists and {len(self.answers)} answers.")
        sizes = {len(o) for o in self.options}
        if len(sizes) > 1 or sizes == {0} or sizes == {1}:
            raise ValueError(f"every question needs the same number K >= 2 of options, got {sorted(sizes)}.")
        K = sizes.pop() if sizes else 0
        bad = [q for q, a in enumerate(self.answers) if not 0 <= a < K]
        if bad:
            raise ValueError(f"answers of questions {bad[:5]} are not option indices in [0, {K}).")

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> QuestionSet:
        """The questions at ``index`` (a slice, integer indices or a boolean mask of
        ``len(self)``) as a new set."""
        if isinstance(index, slice):
            rows: Sequence[int] = range(len(self))[index]
        else:
            picked = np.asarray(index).reshape(-1)
            if picked.dtype == np.bool_:
                if len(picked) != len(self):
                    raise IndexError(f"a boolean mask of questions needs {len(self)} entries, got {len(picked)}.")
                picked = np.flatnonzero(picked)
            rows = [int(i) for i in picked]
        return QuestionSet(
            tuple(self.prompts[i] for i in rows),
            tuple(self.options[i] for i in rows),
            tuple(self.answers[i] for i in rows),
            self.sep,
        )

    @property
    def n_options(self) -> int:
        """``K``, the options per question."""
        return len(self.options[0]) if self.options else 0

    def split(self, train: int | float = 120, seed: int | None = None) -> tuple[QuestionSet, QuestionSet]:
        """``(train, test)``: the first ``train`` questions and the rest.

        Parameters
        ----------
        train : int or float
            A count, or a fraction of the questions if ``0 < train < 1``. The default 120 is
            the paper's MMLU split (first 120 questions to explain, the rest to test plans).
        seed : int, optional
            Shuffle the questions with this seed first (default: keep their order).
        """
        Q = len(self)
        k = int(round(train * Q)) if isinstance(train, float) and 0 < train < 1 else train
        if not is_int(k) or not 0 < k < Q:
            raise ValueError(f"train must leave questions on both sides of the split (0 < train < {Q}), got {train!r}.")
        order = np.arange(Q) if seed is None else np.random.default_rng(seed).permutation(Q)
        return self[order[:k]], self[order[k:]]

    def encode(self, tokenizer, metric: str = "logprob") -> tuple[dict[str, torch.Tensor], MultipleChoice]:
        """Tokenize into the ``inputs`` and ``value`` of :func:`compattr.explain`.

        Parameters
        ----------
        tokenizer : transformers tokenizer
            Prompts get its leading special tokens (e.g. BOS), not trailing ones (an EOS
            the tokenizer appends: the options continue the prompt's text). An option's
            tokens are those that follow the prompt's in the tokenized prompt, separator and
            option (so a tokenizer that marks a word's start, such as SentencePiece's "▁",
            scores the continuation the model would read), or, where the prompt's tokens are
            not a prefix of those, the separator and option tokenized alone.
        metric : {"logprob", "accuracy"}
            See :class:`compattr.values.MultipleChoice`.

        Returns
        -------
        inputs : dict
            ``input_ids`` and ``attention_mask``, ``(Q, L)`` long, right-padded (the value
            strips padding, so the side does not matter).
        value : MultipleChoice
            The tokenized options and the answers.
        """
        if not len(self):
            raise ValueError("cannot encode an empty question set.")
        special = set(tokenizer.all_special_ids)
        prompts = [_without_trailing(tokenizer(p)["input_ids"], special) for p in self.prompts]
        options = [
            [_continuation(tokenizer, p, ids, self.sep + o, special) for o in opts]
            for p, ids, opts in zip(self.prompts, prompts, self.options)
        ]
        empty = [q for q, (p, opts) in enumerate(zip(prompts, options)) if not p or not all(opts)]
        if empty:
            raise ValueError(f"questions {empty[:5]} tokenize to an empty prompt or option.")
        same = [q for q, opts in enumerate(options) if len({tuple(o) for o in opts}) < len(opts)]
        if same:
            raise ValueError(f"questions {same[:5]} have options that tokenize alike: no model can tell them apart.")
        L = max(map(len, prompts))
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(prompts), L), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), L), dtype=torch.long)
        for q, p in enumerate(prompts):
            ids[q, : len(p)] = torch.tensor(p)
            mask[q, : len(p)] = 1
        return {"input_ids": ids, "attention_mask": mask}, MultipleChoice(options, self.answers, metric)

    def to_jsonl(self, path: str | os.PathLike) -> Path:
        """Write one ``{"prompt", "options", "answer"}`` object per line, with ``"sep"`` where
        it is not one space (:func:`from_jsonl` reads it back)."""
        path = Path(path)
        sep = {} if self.sep == " " else {"sep": self.sep}
        with path.open("w", encoding="utf-8") as f:
            for p, o, a in zip(self.prompts, self.options, self.answers):
                f.write(json.dumps({"prompt": p, "options": list(o), "answer": a, **sep}, ensure_ascii=False) + "\n")
        return path


# --------------------------------------------------------------------------- sources
def from_records(
    records: Iterable[Mapping[str, Any]],
    *,
    question: str = "prompt",
    options: str = "options",
    answer: str = "answer",
    letters: bool = False,
) -> QuestionSet:
    """A question set from mappings (JSON lines, dataset rows).

    Parameters
    ----------
    records : iterable of mappings
        One question each.
    question, options, answer : str
        Keys of the question text, the list of options (a list of strings) and the right
        answer. The answer may be an option index, a letter (``"B"``) or the text of the
        right option.
    letters : bool
        MMLU style: the prompt lists the options as ``A. ...`` lines and ends in
        ``Answer:``; the options scored are the letters. Otherwise the prompt is the question
        and the options are scored as its continuation (cloze).

    A ``"sep"`` field, where records have one, is the set's :attr:`QuestionSet.sep` (what
    :meth:`QuestionSet.to_jsonl` writes for a separator other than one space).

    Raises
    ------
    ValueError
        Naming the question: a record that is not a mapping, a missing field, a question
        that is not a string, options that are not a list of strings (a string would be
        split into its characters, a mapping into its keys), an answer that names no
        option, or records with different ``"sep"``.
    """
    located = ((f"question {row}", record) for row, record in enumerate(records))
    return _from_located(located, question, options, answer, letters)


def _from_located(
    located: Iterable[tuple[str, Any]], question: str, options: str, answer: str, letters: bool
) -> QuestionSet:
    """:func:`from_records` over ``(where, record)`` pairs; errors name ``where``."""
    prompts, option_lists, answers, seps = [], [], [], set()
    for where, record in located:
        if not isinstance(record, Mapping):
            raise ValueError(
                f"{where} must be an object with the fields {question!r}, {options!r} and "
                f"{answer!r}, got {_shown(record)}."
            )
        missing = [k for k in (question, options, answer) if k not in record]
        if missing:
            raise ValueError(f"{where} has no field(s) {missing}; it has {sorted(record)}.")
        opts = record[options]
        if not isinstance(opts, (list, tuple)) or not all(isinstance(o, str) for o in opts):
            raise ValueError(f"{where}: {options!r} must be a list of strings, got {_shown(opts)}.")
        if not isinstance(record[question], str):
            raise ValueError(f"{where}: {question!r} must be a string, got {_shown(record[question])}.")
        sep = record.get("sep", " ")
        if not isinstance(sep, str):
            raise ValueError(f"{where}: 'sep' must be a string, got {_shown(sep)}.")
        seps.add(sep)
        text, opts = record[question], list(opts)
        answers.append(_answer_index(record[answer], opts, where))
        if letters:
            listed = "\n".join(f"{_LETTERS[k]}. {o}" for k, o in enumerate(opts))
            text, opts = f"{text}\n{listed}\nAnswer:", list(_LETTERS[: len(opts)])
        prompts.append(text)
        option_lists.append(opts)
    if not prompts:
        raise ValueError("no questions found.")
    if len(seps) > 1:
        raise ValueError(f"the questions' 'sep' fields must agree, got {sorted(map(repr, seps))}.")
    return QuestionSet(prompts, option_lists, answers, seps.pop())


def _shown(value: Any, limit: int = 80) -> str:
    """``value`` as JSON (``null``, ``5``, ``"abc"``), cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _answer_index(answer: Any, options: list[str], where: str) -> int:
    if isinstance(answer, (int, np.integer)) and not isinstance(answer, bool):
        return int(answer)
    text = str(answer).strip()
    if text in options:
        return options.index(text)
    if len(text) == 1 and text.upper() in _LETTERS[: len(options)]:
        return _LETTERS.index(text.upper())
    if text.isdigit():
        return int(text)
    raise ValueError(f"{where}: answer {answer!r} is neither an option index, a letter nor one of the options.")


def from_jsonl(
    path: str | os.PathLike,
    *,
    question: str = "prompt",
    options: str = "options",
    answer: str = "answer",
    letters: bool = False,
) -> QuestionSet:
    """Questions from a JSON-lines file, one object per line.

    By default each line is ``{"prompt": str, "options": [str, ...], "answer": int}`` (what
    :meth:`QuestionSet.to_jsonl` writes); ``question``, ``options``, ``answer`` and
    ``letters`` map other layouts as in :func:`from_records`. Blank lines are skipped;
    errors name the file and line (``questions.jsonl:4``), as :func:`from_records` does.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"question file {path} not found.")
    with path.open(encoding="utf-8") as f:
        return _from_located(_json_lines(path, f), question, options, answer, letters)


def _json_lines(path: Path, lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``("path:line", object)`` for every non-blank line."""
    for line_no, line in enumerate(lines, 1):
        if line.strip():
            try:
                yield f"{path}:{line_no}", json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_no} is not valid JSON: {error.msg}.") from None


def from_dataset(
    name_or_path: str,
    split: str = "test",
    *,
    config: str | None = None,
    question: str = "question",
    options: str = "choices",
    answer: str = "answer",
    letters: bool = True,
) -> QuestionSet:
    """Questions from a ``datasets`` dataset (hub name or local folder), MMLU columns by default.

    ``load_dataset(name_or_path, config, split=split)``; for MMLU: ``from_dataset("cais/mmlu",
    "test", config="all")`` (needs hub access). Columns and ``letters`` as in
    :func:`from_records`.
    """
    import datasets

    try:
        data = datasets.load_dataset(name_or_path, config, split=split)
    except datasets.exceptions.DatasetsError as error:  # files it cannot read as one dataset
        raise ValueError(f"could not load the dataset {name_or_path!r}: {error}") from error
    return from_records(data, question=question, options=options, answer=answer, letters=letters)


def _without_trailing(ids: list[int], special: set[int]) -> list[int]:
    """``ids`` without the special tokens that end them (an EOS or SEP the tokenizer
    appends), where a token that is not special precedes them."""
    end = len(ids)
    while end > 0 and ids[end - 1] in special:
        end -= 1
    return ids[:end] if end > 0 else ids


def _continuation(tokenizer, prompt: str, prompt_ids: list[int], text: str, special: set[int]) -> list[int]:
    """The tokens of ``text`` after ``prompt`` (tokenized as ``prompt_ids``): those that
    follow ``prompt_ids`` in ``prompt + text`` tokenized whole, else ``text`` alone."""
    joint = _without_trailing(tokenizer(prompt + text)["input_ids"], special)
    if len(joint) > len(prompt_ids) and joint[: len(prompt_ids)] == prompt_ids:
        return joint[len(prompt_ids) :]
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def capitals(n_options: int = 4, seed: int = 0) -> QuestionSet:
    """ "The capital of X is" cloze questions for ~240 countries, from ``countryinfo``.

    Distractors are other countries' capitals, drawn with ``seed``, which also shuffles the
    questions and places the right answer. Countries without a single capital, with a
    comma or parenthesis in their name, or whose capital an earlier country (alphabetically)
    already asks for, are left out. SmolLM2-135M-Instruct answers ~3/4 correctly (chance
    ``1 / n_options``).

    Raises
    ------
    MissingAssetError
        ``countryinfo`` is not installed; the message gives the pip command.
    """
    if n_options < 2:
        raise ValueError(f"n_options must be >= 2, got {n_options}.")
    pairs: dict[str, str] = {}  # capital -> country
    for info in _countries():
        name, capital = str(info.get("name", ",")), info.get("capital")
        if isinstance(capital, str) and capital and "/" not in capital and not any(c in name for c in ",("):
            pairs.setdefault(capital, name)
    capitals_ = sorted(pairs)
    rng = np.random.default_rng(seed)
    prompts, options, answers = [], [], []
    for i in rng.permutation(len(capitals_)):
        others = rng.choice(len(capitals_) - 1, n_options - 1, replace=False)
        distractors = [capitals_[j + (j >= i)] for j in others]  # skip index i, the answer
        right = int(rng.integers(n_options))
        prompts.append(f"The capital of {pairs[capitals_[i]]} is")
        options.append([*distractors[:right], capitals_[i], *distractors[right:]])
        answers.append(right)
    return QuestionSet(prompts, options, answers)


def continents(n_options: int = 4, seed: int = 0) -> QuestionSet:
    """ "X is a country in" cloze questions (Africa, America, Asia, Europe, Oceania) for ~250
    countries, from ``countryinfo``: a second factual task, on the countries of
    :func:`capitals`, for plans fitted on another one.

    The options are ``n_options`` of the five continents (the right one and random others,
    drawn with ``seed``, which also shuffles the questions); countries with no region in
    ``countryinfo`` or a comma or parenthesis in their name are left out.

    Raises
    ------
    MissingAssetError
        ``countryinfo`` is not installed; the message gives the pip command.
    """
    if not 2 <= n_options <= len(_CONTINENTS):
        raise ValueError(f"n_options must be in [2, {len(_CONTINENTS)}], got {n_options}.")
    pairs = sorted(
        (info["name"], _CONTINENTS[info["region"]])
        for info in _countries()
        if info.get("region") in _CONTINENTS and not any(c in info.get("name", ",") for c in ",(")
    )
    rng = np.random.default_rng(seed)
    choices = sorted(set(_CONTINENTS.values()))
    prompts, options, answers = [], [], []
    for i in rng.permutation(len(pairs)):
        name, right_answer = pairs[i]
        others = [c for c in choices if c != right_answer]
        picked = [others[j] for j in rng.choice(len(others), n_options - 1, replace=False)]
        right = int(rng.integers(n_options))
        prompts.append(f"{name} is a country in")
        options.append([*picked[:right], right_answer, *picked[right:]])
        answers.append(right)
    return QuestionSet(prompts, options, answers)


#: countryinfo's regions, as the continent words the cloze scores.
_CONTINENTS = {"Africa": "Africa", "Americas": "America", "Asia": "Asia", "Europe": "Europe", "Oceania": "Oceania"}

#: The built-in question sets by name (``--task`` of the recipes and the CLI).
TASKS = {"capitals": capitals, "continents": continents}


def load(task: str, *, seed: int = 0, split: str | None = None, config: str | None = None) -> QuestionSet:
    """A question set by name: a built-in task, a JSONL file, or a ``datasets`` dataset.

    Parameters
    ----------
    task : str
        A key of :data:`TASKS` (``"capitals"``, ``"continents"``: offline, seeded by
        ``seed``); a path to a ``.jsonl`` file (:func:`from_jsonl`); otherwise a ``datasets``
        hub name or local folder with MMLU columns (:func:`from_dataset`).
    seed : int
        Seeds a built-in task's distractors and order.
    split, config : str, optional
        A ``datasets`` dataset's split (default ``"test"``) and configuration (e.g. MMLU's
        ``"high_school_us_history"``); refused for a built-in task or a file, which have
        neither.
    """
    builtin, file = task in TASKS, task.endswith(".jsonl") or Path(task).is_file()
    if (builtin or file) and (split is not None or config is not None):
        given = ", ".join(
            f"{name}={value!r}" for name, value in (("split", split), ("config", config)) if value is not None
        )
        kind = "a built-in task" if builtin else "a file"
        raise ValueError(f"{task!r} is {kind}, not a datasets dataset: it has no split or configuration ({given}).")
    if builtin:
        return TASKS[task](seed=seed)
    if file:
        return from_jsonl(task)
    return from_dataset(task, "test" if split is None else split, config=config)


def _countries() -> list[dict[str, Any]]:
    """countryinfo's records, sorted by key; :class:`MissingAssetError` without the package."""
    try:
        from countryinfo import CountryInfo
    except ImportError:
        raise MissingAssetError(
            f"the capitals and continents tasks need countryinfo: pip install --no-deps {COUNTRYINFO_PIN}"
        ) from None
    return [dict(info) for _, info in sorted(CountryInfo.all().items())]


# --------------------------------------------------------------------------- measuring
def answered(
    model: torch.nn.Module,
    tokenizer,
    questions: QuestionSet,
    heads=None,
    kept=None,
    *,
    batch_size: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Which ``questions`` ``model`` answers right, optionally with only the ``kept`` heads.

    Parameters
    ----------
    model : torch.nn.Module
        A causal LM.
    tokenizer
        Its tokenizer.
    questions : QuestionSet
    heads : compattr.AttentionHeads, optional
        The heads ``kept`` refers to; default all heads of ``model``.
    kept : (n,) or (p, n) bool array or PruningPlan, optional
        Heads kept (True); ``p`` rows measure ``p`` plans; a plan must cover these heads
        (:meth:`~compattr.optimize.PruningPlan.check_features`). Default: all kept.
    batch_size : int, optional
        Rows per forward pass (:class:`compattr.query.Query`).
    progress : bool
        Show a progress bar over the plans.

    Returns
    -------
    (Q,) bool array, or (p, Q) for a 2-D ``kept``
        Whether the highest-scored option of each question is the right one.
    """
    if heads is None:
        if kept is not None:
            raise ValueError("pass the heads that kept refers to (heads=).")
        heads = AttentionHeads(model)
    if isinstance(kept, PruningPlan):
        kept.check_features(heads)
    kept = np.ones(heads.n, dtype=bool) if kept is None else np.asarray(getattr(kept, "kept", kept), dtype=bool)
    inputs, value = questions.encode(tokenizer, metric="accuracy")
    query = Query(model, heads, value, inputs, batch_size=batch_size)
    K = np.atleast_2d(kept)
    rows = [query.evaluate(K[i : i + 1], per_example=True)[0] for i in tqdm(range(len(K)), disable=not progress)]
    right = np.stack(rows) > 0.5
    return right[0] if kept.ndim == 1 else right


def accuracy(
    model: torch.nn.Module,
    tokenizer,
    questions: QuestionSet,
    heads=None,
    kept=None,
    *,
    batch_size: int | None = None,
    progress: bool = False,
):
    """Accuracy of ``model`` on ``questions``, optionally with only the ``kept`` heads.

    The mean of :func:`answered`, whose parameters it takes.

    Returns
    -------
    float, or (p,) float array for a 2-D ``kept``
        Fraction of questions whose highest-scored option is the right one.
    """
    right = answered(model, tokenizer, questions, heads, kept, batch_size=batch_size, progress=progress)
    return float(right.mean()) if right.ndim == 1 else right.mean(1)


#: The baselines :func:`compare_plans` measures the ProxySPEX plan against.
BASELINES = ("LASSO", "Best-of-N", "greedy", "single-head")


def compare_plans(
    explanation,
    model: torch.nn.Module,
    tokenizer,
    heads,
    train: QuestionSet,
    test: QuestionSet,
    size: int,
    *,
    metric: str = "logprob",
    baselines: Sequence[str] = BASELINES,
    rounds: int = 8,
    per_round: int = 8,
    time_limit: float | None = ROUND_TIME_LIMIT,
    best_of: int | None = None,
    min_per_layer: int | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    confidence: float = 0.95,
    progress: bool = True,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Pruning plans of ``size`` heads by ProxySPEX and the baselines, at counted model calls,
    and their accuracy on held-out questions with paired score intervals.

    Every plan maximises the same train value (``metric`` on the ``train`` questions) and
    every model call a method makes on it is counted:

    ``ProxySPEX``
        The explanation's distinct fitting masks (a mask drawn twice is evaluated once), plus the calls of
        :func:`compattr.optimize.verified_plan`: ``rounds`` rounds of ``per_round`` kept-sets
        proposed by the spectrum (its exact optimum and swaps around the best measured
        kept-set), measured, and refitted on; the best measured kept-set wins.
    ``LASSO``
        The LASSO fitted on the same masks, maximised exactly (the paper's baseline).
    ``Best-of-N``
        The best of ``best_of`` random kept-sets (default: as many as ProxySPEX's calls).
    ``greedy``
        Backward elimination measured on the model, with ProxySPEX's number of calls.
    ``single-head``
        Each head removed alone (``n + 1`` calls); the ``size`` costliest removals kept.

    Each plan is then run on the ``test`` questions, and its accuracy, and its difference to
    the ProxySPEX plan's, get an interval over those questions (Wilson's score interval;
    Agresti and Min's for the paired difference:
    :func:`compattr.apps.stats.paired_accuracy_intervals`).

    Parameters
    ----------
    explanation : compattr.Explanation
        Fitted on ``train`` with ``heads`` and ``metric`` (with its LASSO baseline when
        ``"LASSO"`` is compared).
    model, tokenizer
        The causal LM and its tokenizer.
    heads : compattr.AttentionHeads
        The features of ``explanation``.
    train, test : QuestionSet
        The questions explained, and those the plans are tested on.
    size : int
        Heads kept by every plan, ``1 <= size <= heads.n``.
    metric : {"logprob", "accuracy"}
        The train value (the one ``explanation`` explains).
    baselines : sequence of str
        Which of :data:`BASELINES` to run.
    rounds, per_round : int
        ProxySPEX's verification: rounds, and kept-sets measured per round.
    time_limit : float, optional
        Seconds each verification round's integer program may take (None: no limit). With
        thousands of masks the spectrum holds about a thousand terms, and the exact program
        can take minutes (docs/results.md).
    best_of : int, optional
        Random kept-sets Best-of-N draws (the paper: 5,000); default ProxySPEX's calls.
    min_per_layer : int, optional
        Every plan keeps at least this many heads in each layer (Best-of-N's infeasible draws
        are neither queried nor chosen).
    seed : int
        Seeds the refits and Best-of-N's draws.
    cache_dir : path, optional
        Query cache of the train value (the one ``explain`` used).
    batch_size : int, optional
        Rows per forward pass.
    confidence : float
        Coverage of the accuracy intervals.
    progress : bool
        Show progress bars.

    Returns
    -------
    plans : dict of str -> PruningPlan
        ``"ProxySPEX"`` and each baseline; ``value`` is ProxySPEX's prediction of the plan.
    table : pandas.DataFrame
        One row per plan after ``"unpruned"``: ``method``, ``heads kept``, ``model calls``,
        ``predicted`` (ProxySPEX's f̂), ``train value`` (measured), ``test accuracy`` with
        ``ci low`` / ``ci high``, and ``vs ProxySPEX`` (accuracy difference) with
        ``vs low`` / ``vs high``. ``table.attrs["verification"]`` holds ProxySPEX's rounds
        (:class:`compattr.optimize.PlanSearch`: predicted vs measured per candidate) and
        ``table.attrs["confidence"]`` the intervals' coverage; :func:`verdict` reads it;
        ``table.attrs["best_of"]`` the random kept-sets Best-of-N drew. A
        ``predicted`` value outside the metric's range (:data:`METRIC_RANGES`) issues a
        :class:`compattr.optimize.ValueRangeWarning` naming the rows.
    """
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}; choose from {', '.join(BASELINES)}.")
    if "LASSO" in baselines and explanation.lasso is None:
        raise ValueError("the explanation has no LASSO baseline; run explain(..., baseline=True).")
    n, names, groups = heads.n, heads.names, heads.groups
    size = check_int(size, "size", 1, n)
    if list(explanation.names) != list(names):
        raise ValueError(
            f"the explanation's features ({_span_of(explanation.names)}) are not these heads "
            f"({_span_of(names)}): its outputs would join another set function's."
        )
    inputs, value = train.encode(tokenizer, metric=metric)
    fitted_on = explanation.fit_info.get("value")
    if fitted_on is not None and fitted_on != describe(value):
        raise ValueError(
            f"the explanation was fitted on {fitted_on}, the plans would measure {describe(value)}: "
            f"pass metric= as explain measured it (its outputs and these would be mixed)."
        )
    query = Query(model, heads, value, inputs, batch_size=batch_size)
    bar = tqdm(desc="plan calls", unit="mask", disable=not progress)

    def train_value(K: np.ndarray) -> np.ndarray:
        bar.update(len(K))
        return run_queries(query, K, cache_dir=cache_dir, progress=False)

    constraints = {"groups": groups, "min_per_group": min_per_layer}
    with bar:
        oracle = MaskOracle(train_value, n, known=(explanation.masks, explanation.outputs))
        search = verified_plan(
            oracle,
            size,
            spectrum=explanation.spectrum,
            rounds=rounds,
            per_round=per_round,
            seed=seed,
            time_limit=time_limit,
            **constraints,
        )
        calls = _distinct_rows(explanation.masks) + search.calls
        draws = calls if best_of is None else best_of  # Best-of-N's random kept-sets
        found = {"ProxySPEX": (search.kept, calls)}
        for method in baselines:
            found[method] = _baseline(method, explanation, train_value, n, size, calls, draws, seed, constraints)
    plans = {
        m: PruningPlan(k, names, groups, value=float(explanation.spectrum.predict(k[None])[0]))
        for m, (k, _) in found.items()
    }
    K = np.stack([np.ones(n, dtype=bool)] + [k for k, _ in found.values()])
    right = answered(model, tokenizer, test, heads, K, batch_size=batch_size, progress=progress)
    methods = ["unpruned", *found]
    table = pd.DataFrame(
        {
            "method": methods,
            "heads kept": K.sum(1),
            "model calls": [0] + [c for _, c in found.values()],
            "predicted": explanation.spectrum.predict(K),
            "train value": train_value(K),
        }
    ).join(accuracy_intervals(right, methods, confidence=confidence))
    table.attrs["verification"] = search.rounds
    table.attrs["confidence"] = confidence
    table.attrs["best_of"] = draws
    note = range_note(table["predicted"], table["method"], METRIC_RANGES[metric])
    if note:
        warnings.warn(note, ValueRangeWarning, stacklevel=2)
    return plans, table


def accuracy_intervals(right, methods: Sequence[str], *, confidence: float = 0.95) -> pd.DataFrame:
    """Test accuracy of each method with its score interval, and its difference to the
    ``"ProxySPEX"`` method's with the paired interval of the difference.

    Parameters
    ----------
    right : (p, Q) bool array
        Whether each of ``p`` methods' plans answers each of ``Q`` questions right
        (:func:`answered`).
    methods : sequence of p str
        Their names; one is ``"ProxySPEX"``.
    confidence : float
        Coverage of the intervals (:func:`compattr.apps.stats.paired_accuracy_intervals`).

    Returns
    -------
    pandas.DataFrame
        One row per method, in order: ``test accuracy``, ``ci low``, ``ci high``, ``vs
        ProxySPEX``, ``vs low``, ``vs high`` (the columns of :func:`compare_plans`' table).
    """
    methods = list(methods)
    intervals = paired_accuracy_intervals(right, methods, reference=methods.index("ProxySPEX"), confidence=confidence)
    names = {"mean": "test accuracy", "ci_low": "ci low", "ci_high": "ci high"}
    names |= {"diff": "vs ProxySPEX", "diff_low": "vs low", "diff_high": "vs high"}
    return intervals.rename(columns=names).reset_index(drop=True)


def _span_of(names: Sequence[str]) -> str:
    """``names`` in a few words: the first and last, and how many."""
    return f"{len(names)}: {names[0]} .. {names[-1]}" if len(names) else "none"


def verdict(table: pd.DataFrame) -> str:
    """A plain sentence on a :func:`compare_plans` table: which plan won on test accuracy, and
    which differences to ProxySPEX's plan the paired intervals tell apart from zero."""
    plans = table[table["method"] != "unpruned"]
    best = plans["test accuracy"].max()
    winners = plans.loc[plans["test accuracy"] == best, "method"].tolist()
    others = plans[plans["method"] != "ProxySPEX"]
    level = f"{100 * table.attrs.get('confidence', 0.95):g} %"
    beaten = others.loc[others["vs high"] < 0, "method"].tolist()
    behind = others.loc[others["vs low"] > 0, "method"].tolist()
    lead = (
        f"{' and '.join(winners)} won with test accuracy {best:.3f}"
        if len(winners) < len(plans)
        else f"every plan tied at test accuracy {best:.3f}"
    )
    parts = [lead + "."]
    if beaten:
        parts.append(f"ProxySPEX is better than {', '.join(beaten)} with the {level} interval above zero.")
    if behind:
        parts.append(f"{', '.join(behind)} is better than ProxySPEX with the {level} interval above zero.")
    undecided = [m for m in others["method"] if m not in beaten + behind]
    if undecided:
        parts.append(f"Against {', '.join(undecided)} the interval includes zero: no clear difference.")
    return " ".join(parts)


def _distinct_rows(masks: np.ndarray) -> int:
    """The model calls the masks (m, n) cost: each distinct mask is evaluated once
    (:func:`~compattr.query.run_queries`), however often it was drawn."""
    return len(np.unique(np.packbits(masks, axis=1), axis=0)) if len(masks) else 0


def _baseline(
    method: str, explanation, train_value, n: int, size: int, calls: int, draws: int, seed: int, constraints: dict
) -> tuple[np.ndarray, int]:
    """One baseline's kept-set and the model calls it spent (see :func:`compare_plans`):
    greedy within ``calls``, Best-of-N from ``draws`` random kept-sets."""
    if method == "LASSO":
        return best_subset(explanation.lasso, size, **constraints), _distinct_rows(explanation.masks)
    if method == "single-head":
        oracle = MaskOracle(train_value, n)
        return single_feature_ablation(oracle, size, **constraints), oracle.calls
    if method == "greedy":
        oracle = MaskOracle(train_value, n, budget=calls)
        return greedy_elimination(oracle, size, **constraints), oracle.calls
    oracle = MaskOracle(train_value, n, budget=draws)
    groups, minimum = constraints["groups"], constraints["min_per_group"]

    def score(K: np.ndarray) -> np.ndarray:
        ok = meets_group_minimum(K, groups, minimum)
        if not ok.any():
            raise ValueError(
                f"none of {len(K)} random kept-sets keeps {minimum} heads per layer; "
                "raise best_of or lower min_per_layer."
            )
        y = np.full(len(K), np.finfo(np.float64).min)  # lowest finite score: never chosen
        y[ok] = oracle(K[ok])
        return y

    return best_of_n(score, size, draws, seed, n=n), oracle.calls
