"""The ``compattr`` command: explain or prune a language model's attention heads on a question set.

``compattr explain`` masks random subsets of the heads, measures the model on multiple-choice
questions, fits ProxySPEX and writes the explanation, plots and a summary.
``compattr prune`` does the same on a train split, then plans which heads to keep (ProxySPEX
by integer programming, against the LASSO and Best-of-N baselines) and measures every plan's
real accuracy on the held-out questions. ``compattr shapley`` measures complementary pairs of
masks and writes each head's Shapley value with its interval (:func:`compattr.explain_shapley`).
``compattr SUBCOMMAND --help`` has examples.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from .._validation import plan_size, range_note
from ..explain import explain
from ..explain_shapley import explain_shapley
from ..features import AttentionHeads
from ..query.cache import CacheMismatchError
from ..query.masks import budget
from . import tasks
from .arguments import format_layers, keep_value, parse_layers
from .models import ALIASES, MissingAssetError, default_device, load_model
from .report import markdown_table, write_explanation, write_plans, write_shapley

_VALUES = {"mc-logprob": "logprob", "mc-accuracy": "accuracy"}
# Errors in what the user asked for (compattr raises ValueError for bad input, OSError for
# missing files and models): reported in one line with exit status 2.
_USAGE_ERRORS = (MissingAssetError, OSError, ValueError)

_COMMON_EPILOG = """
MODEL is a Hugging Face hub id, a local model folder, a .gguf file, or an alias ({aliases}).
--task is 'capitals' (offline: "The capital of X is", 4 options, from countryinfo),
'continents' (offline: "X is a country in", 4 of 5 continents), a
.jsonl file with one {{"prompt": ..., "options": [...], "answer": index}} per line, or a
`datasets` name or folder with MMLU columns (question, choices, answer).
"""

_EXPLAIN_EPILOG = (
    _COMMON_EPILOG
    + """
examples:
  # SmolLM2-135M (offline asset), last 4 layers = 36 heads, 16 capitals questions
  compattr explain smollm2 --layers 26-29 --questions 16 --alpha 2 --test-masks 100 \\
      --out out/explain
  # your own questions and model folder, a fixed budget of 2000 queries
  compattr explain ./my-model --task questions.jsonl --budget 2000 --out out/mine
  # the paper's setting (needs hub access and a GPU)
  compattr explain meta-llama/Llama-3.1-8B-Instruct --task cais/mmlu \\
      --dataset-config high_school_us_history --layers 29-31 --budget 5000 \\
      --value mc-accuracy --dtype bfloat16

writes to --out: spectrum.json, lasso.json, queries.npz, explanation.json (reload with
compattr.Explanation.load), summary.txt, interactions.csv (the 50 strongest terms with
95 % intervals), heads.png, energy.png, settings.json; and the query cache (--cache,
default OUT/queries: one subfolder per model, heads, value and questions, so a rerun
resumes and one cache serves every run).
"""
)

_PRUNE_EPILOG = (
    _COMMON_EPILOG
    + """
The first --questions questions (default 120, the paper's MMLU split) are explained; the
plans are tested on the rest (or the next --test-questions).
--keep K: a whole number (30) is a count of heads, 1..n; a decimal in (0, 1] (0.3) or a
percentage (30%) is a fraction of them, 1.0 = all; anything else (1.5, 0, a count above
n, a fraction that rounds to no head) is refused. The same rule as Explanation.plan(keep).
When ProxySPEX predicts a value the metric cannot take (a positive log-probability, an
accuracy above 1), the table is followed by a note: trust the measured columns there.

examples:
  # keep half of SmolLM2's last 4 layers' heads, at least 2 per layer
  compattr prune smollm2 --layers 26-29 --questions 16 --alpha 2 --test-masks 100 \\
      --keep 0.5 --min-per-layer 2
  # the paper's setting: keep 30 of 96 heads of Llama-3.1-8B's last three layers
  compattr prune meta-llama/Llama-3.1-8B-Instruct --task cais/mmlu \\
      --dataset-config high_school_us_history --layers 29-31 --budget 5000 \\
      --value mc-accuracy --keep 30 --best-of 5000 --dtype bfloat16

writes to --out: explanation/ (as `compattr explain`),
plans/{{proxyspex,lasso,best_of_n,greedy,single_head}}.json
(compattr.PruningPlan.from_json), results.md and results.csv (the table printed), summary.txt.
"""
)


_SHAPLEY_EPILOG = (
    _COMMON_EPILOG
    + """
The budget is spent on complementary pairs of masks (a head set and its complement), from
which Shapley values are the more accurate at low budgets; each value gets a jackknife
interval from --folds more fits (no model call; --no-intervals skips them).

examples:
  # SmolLM2-135M (offline asset), last 4 layers = 36 heads, 16 capitals questions
  compattr shapley smollm2 --layers 26-29 --questions 16 --alpha 2 --out out/shapley

writes to --out: shapley.csv (every head by decreasing |Shapley value|, with its interval),
groups.csv (summed per layer, with intervals), shapley.png, summary.txt, shapley.npz
(everything, the queries included; reload with compattr.ShapleyExplanation.load),
settings.json; and the query cache (--cache, default OUT/queries, shared with explain).
"""
)


#: Each subcommand's help, description and epilog.
_SUBCOMMANDS = {
    "explain": (
        "interactions of heads on a question set",
        "Mask random subsets of the heads, measure the model on the questions, fit ProxySPEX and "
        "the LASSO baseline, write the explanation, plots and a summary.",
        _EXPLAIN_EPILOG,
    ),
    "prune": (
        "which heads to keep, checked on held-out questions",
        "Explain the heads on the train questions, plan which to keep by ProxySPEX (exact integer "
        "programming), LASSO and Best-of-N, and measure each plan's accuracy on the held-out questions.",
        _PRUNE_EPILOG,
    ),
    "shapley": (
        "Shapley value of each head on a question set, with intervals",
        "Measure the model on complementary pairs of head masks, fit the paired Shapley estimator "
        "and write each head's Shapley value with its jackknife interval.",
        _SHAPLEY_EPILOG,
    ),
}


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``compattr`` argument parser with its ``explain`` and ``prune`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="compattr",
        description="Which combinations of a model's attention heads drive its answers "
        "(ProxySPEX, Butler et al. 2025).",
        epilog="example (offline; its timing is in docs/results.md):\n"
        "  compattr prune smollm2 --layers 26-29 --questions 16 --alpha 2 --test-masks 100 --keep 0.5\n\n"
        "run 'compattr SUBCOMMAND --help' for every option and more examples.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{explain,prune,shapley}")
    aliases = ", ".join(ALIASES)
    explain, prune, shapley = (
        sub.add_parser(
            command,
            help=help_,
            description=description,
            epilog=epilog.format(aliases=aliases),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        for command, (help_, description, epilog) in _SUBCOMMANDS.items()
    )
    for p, command in ((explain, "explain"), (prune, "prune"), (shapley, "shapley")):
        _add_common(p, command)
    shapley.add_argument(
        "--folds",
        type=_int_at_least(2),
        default=None,
        metavar="K",
        help="groups of pairs the jackknife leaves out in turn, one more fit each (default 5; not with --no-intervals)",
    )
    shapley.add_argument("--no-intervals", action="store_true", help="skip the intervals (and their fits)")
    prune.add_argument(
        "--keep",
        type=keep_value,
        default=0.3,
        metavar="K",
        help="heads kept: a count 1..n (30), or a fraction in (0, 1] (0.3 or 30%%); default 0.3",
    )
    prune.add_argument(
        "--min-per-layer",
        type=_int_at_least(0),
        default=None,
        metavar="K",
        help="every plan keeps at least K heads in each layer",
    )
    prune.add_argument(
        "--best-of",
        type=_positive_int,
        default=None,
        metavar="N",
        help="random kept-sets the Best-of-N baseline queries (default: as many as ProxySPEX's "
        "model calls, its budget plus the calls that checked its plan)",
    )
    prune.add_argument(
        "--test-questions",
        type=_positive_int,
        default=None,
        metavar="N",
        help="test on the N questions after the train questions (default: all the rest)",
    )
    explain.set_defaults(run=_run_explain)
    prune.set_defaults(run=_run_prune)
    shapley.set_defaults(run=_run_shapley)
    return parser


def _add_common(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("model", metavar="MODEL", help="hub id, local folder, .gguf file or alias")
    what = p.add_argument_group("what to explain")
    what.add_argument(
        "--features", choices=["heads"], default="heads", help="features to mask (default: attention heads)"
    )
    what.add_argument(
        "--layers",
        type=parse_layers,
        default=None,
        metavar="SPEC",
        help="layers whose heads are features, e.g. 20-29 or 0,5,10-12 (default: all)",
    )
    what.add_argument(
        "--task",
        default="capitals",
        metavar="TASK",
        help="'capitals', 'continents', a .jsonl file, or a datasets name/folder (default: capitals)",
    )
    what.add_argument("--split", default=None, help="dataset split of a datasets TASK (default: test)")
    what.add_argument(
        "--dataset-config",
        default=None,
        metavar="NAME",
        help="dataset configuration of a datasets TASK, e.g. high_school_us_history for cais/mmlu",
    )
    what.add_argument(
        "--value",
        choices=list(_VALUES),
        default="mc-logprob",
        help="mc-logprob: mean log-probability of the right option, normalised over "
        "the options (smooth, default); mc-accuracy: fraction answered right",
    )
    what.add_argument(
        "--questions",
        type=_positive_int,
        default=120,
        metavar="N",
        help="explain on the first N questions (default 120, the paper's MMLU train split)",
    )
    fit = p.add_argument_group("queries and fit")
    size = fit.add_mutually_exclusive_group()
    size.add_argument(
        "--budget", type=_positive_int, default=None, metavar="M", help="number of masked queries to fit on"
    )
    alpha = 2.0 if command == "shapley" else 4.0  # the paired mode is for low budgets
    size.add_argument(
        "--alpha",
        type=_positive_float,
        default=alpha,
        metavar="A",
        help=f"budget = ceil(A * n * log2 n) for n heads (default {alpha:g}; the paper uses 2-8)",
    )
    if command != "shapley":  # Shapley values need no held-out masks: they sum to f(all) - f(none)
        fit.add_argument(
            "--test-masks",
            type=_int_at_least(2),
            default=1000,
            metavar="T",
            help="held-out masks for the faithfulness R^2, at least 2 (default 1000)",
        )
    fit.add_argument("--seed", type=int, default=0, help="seeds the questions, masks and fit (default 0)")
    run = p.add_argument_group("running")
    run.add_argument("--dtype", default="float32", help="model dtype: float32 (default), bfloat16, float16")
    run.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available, else cpu)")
    run.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice)",
    )
    run.add_argument(
        "--batch-size",
        type=_batch_size,
        default=None,
        metavar="B",
        help="rows per forward pass, or 'auto' to grow it while throughput rises (default "
        "64 on CPU, auto on GPU; halved on out-of-memory)",
    )
    run.add_argument(
        "--out", type=Path, default=Path("out") / command, metavar="DIR", help=f"output folder (default out/{command})"
    )
    run.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="query cache root, one subfolder per model, heads, value and questions: a rerun resumes "
        "without re-querying, and runs may share one root (default OUT/queries)",
    )
    run.add_argument(
        "--model-cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="where converted GGUF models are kept (default $COMPATTR_CACHE/models or ~/.cache/compattr/models)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")


def _batch_size(text: str) -> int | str:
    """An argparse type: a positive integer or ``auto``."""
    return text if text == "auto" else _positive_int(text)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)


def _positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


# --------------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run ``compattr`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        args.run(args, _Setup(args))
    except CacheMismatchError as error:
        return _usage_error(args.command, f"{error} Pass another --cache folder or delete it.")
    except _USAGE_ERRORS as error:
        return _usage_error(args.command, error)
    return 0


def _usage_error(command: str, error) -> int:
    print(f"compattr {command}: error: {error}", file=sys.stderr)
    return 2


class _Setup:
    """What both subcommands need, checked before any query: questions, model, heads, budget."""

    def __init__(self, args: argparse.Namespace):
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.quiet:
            import transformers

            transformers.utils.logging.disable_progress_bar()
        if args.command == "shapley" and args.no_intervals and args.folds is not None:
            raise ValueError("--folds sets the intervals' fits; it does nothing with --no-intervals.")
        questions = _questions(args)
        if args.command == "prune":
            if len(questions) <= args.questions:
                raise ValueError(
                    f"--questions {args.questions} leaves no test questions: the task has "
                    f"{len(questions)}; lower --questions."
                )
            self.test: tasks.QuestionSet | None
            self.train, self.test = questions.split(train=args.questions)
            if args.test_questions is not None:
                self.test = self.test[: args.test_questions]
            if len(self.test) < 2:
                raise ValueError(
                    f"the plans are compared on at least 2 test questions (paired intervals over them); "
                    f"got {len(self.test)}: raise --test-questions or lower --questions."
                )
        else:
            self.train, self.test = questions[: args.questions], None
        device = args.device or default_device()
        self.model, self.tokenizer = load_model(args.model, dtype=args.dtype, device=device, cache_dir=args.model_cache)
        self.heads = AttentionHeads(self.model, layers=args.layers)
        n = self.heads.n
        self.budget = args.budget or budget(n, args.alpha)
        if args.command == "shapley":  # whole complementary pairs
            self.budget -= self.budget % 2
        self.size = plan_size(args.keep, n, name="--keep") if args.command == "prune" else None
        if self.size is not None and args.min_per_layer is not None:
            layers = len(self.heads.layers)
            if args.min_per_layer * layers > self.size:
                raise ValueError(
                    f"--min-per-layer {args.min_per_layer} over {layers} layers needs "
                    f"{args.min_per_layer * layers} heads but the plan keeps {self.size}."
                )
        self.cache = args.cache or args.out / "queries"


def _questions(args: argparse.Namespace) -> tasks.QuestionSet:
    return tasks.load(args.task, seed=args.seed, split=args.split, config=args.dataset_config)


# --------------------------------------------------------------------------- subcommands
def _pipeline_arguments(args: argparse.Namespace, setup: _Setup) -> dict:
    """What ``explain`` and ``explain_shapley`` take alike: the heads, the value and inputs of
    the train questions, the budget, seed, cache, batch size and progress bars."""
    inputs, value = setup.train.encode(setup.tokenizer, metric=_VALUES[args.value])
    return {
        "features": setup.heads,
        "value": value,
        "inputs": inputs,
        "budget": setup.budget,
        "seed": args.seed,
        "cache_dir": setup.cache,
        "batch_size": args.batch_size,
        "progress": not args.quiet,
    }


def _explain(args: argparse.Namespace, setup: _Setup):
    value_range = tasks.METRIC_RANGES[_VALUES[args.value]]
    return explain(setup.model, test_masks=args.test_masks, value_range=value_range, **_pipeline_arguments(args, setup))


def _run_explain(args: argparse.Namespace, setup: _Setup) -> None:
    start = time.perf_counter()
    ex = _explain(args, setup)
    seconds = time.perf_counter() - start
    held_out = len(ex.test_masks)
    text = _header(args, setup, seconds, held_out) + "\n" + ex.summary()
    write_explanation(ex, args.out, text, _settings(args, setup, seconds, held_out), progress=not args.quiet)
    print(text)
    print(f"\nwritten to {args.out}/")


def _run_shapley(args: argparse.Namespace, setup: _Setup) -> None:
    start = time.perf_counter()
    intervals = not args.no_intervals
    folds = (args.folds or 5) if intervals else None  # --folds with --no-intervals is refused
    sv = explain_shapley(setup.model, intervals=intervals, folds=folds, **_pipeline_arguments(args, setup))
    seconds = time.perf_counter() - start
    text = _header(args, setup, seconds) + "\n" + sv.summary()
    recorded = {"folds": folds, "intervals": intervals}
    write_shapley(sv, args.out, text, _settings(args, setup, seconds) | recorded)
    print(text)
    print(f"\nwritten to {args.out}/")


def _run_prune(args: argparse.Namespace, setup: _Setup) -> None:
    assert setup.test is not None and setup.size is not None  # prune sets both
    start = time.perf_counter()
    ex = _explain(args, setup)
    plans, table = tasks.compare_plans(
        ex,
        setup.model,
        setup.tokenizer,
        setup.heads,
        setup.train,
        setup.test,
        setup.size,
        metric=_VALUES[args.value],
        best_of=args.best_of,
        min_per_layer=args.min_per_layer,
        seed=args.seed,
        cache_dir=setup.cache,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    seconds = time.perf_counter() - start
    held_out = len(ex.test_masks)
    settings = _settings(args, setup, seconds, held_out) | {
        "keep": setup.size,
        "best_of": table.attrs["best_of"],
        "min_per_layer": args.min_per_layer,
        "test_questions": len(setup.test),
    }
    note = range_note(table["predicted"], table["method"], ex.value_range)
    results = markdown_table(table) + f"\n\n{tasks.verdict(table)}" + ("" if note is None else f"\n\nnote: {note}")
    text = "\n".join(
        [
            _header(args, setup, seconds, held_out),
            ex.summary(),
            "",
            (
                f"pruning plans keeping {setup.size} of {setup.heads.n} heads "
                f"(train: {len(setup.train)} questions, test: {len(setup.test)}):"
            ),
            results,
        ]
    )
    print(text)
    # the results first, the explanation's figures (the slowest) last: an interruption there
    # loses no result, nor leaves an earlier run's results beside this one's settings
    write_plans(plans, args.out / "plans")
    table.to_csv(args.out / "results.csv", index=False)
    (args.out / "results.md").write_text(results + "\n")
    (args.out / "summary.txt").write_text(text + "\n")
    write_explanation(ex, args.out / "explanation", ex.summary(), settings, progress=not args.quiet)
    print(f"\nwritten to {args.out}/")


# --------------------------------------------------------------------------- output
def _header(args: argparse.Namespace, setup: _Setup, seconds: float, held_out: int | None = None) -> str:
    """The report's first line; ``held_out``: the held-out masks the explanation has (fewer
    than ``--test-masks`` where the features have fewer distinct masks), None for none."""
    heads = setup.heads
    held_out_text = "" if held_out is None else f" + {held_out} held-out masks"
    return (
        f"{args.model}: {heads.n} heads (layers {format_layers(heads.layers)} x {heads.n_heads}), "
        f"task {args.task}, value {args.value} on {len(setup.train)} questions, "
        f"budget {setup.budget}{held_out_text}, seed {args.seed}; {seconds:.0f} s"
    )


def _settings(args: argparse.Namespace, setup: _Setup, seconds: float, held_out: int | None = None) -> dict:
    """What ran, for settings.json: every option that changes the results, and the dtype
    and device the model ran in (``--dtype auto`` names neither); ``held_out`` as in
    :func:`_header` (``test_masks``, with the number asked as ``test_masks_asked``)."""
    parameter = next(setup.model.parameters())
    return {
        "command": args.command,
        "model": args.model,
        "layers": setup.heads.layers,
        "n_heads": setup.heads.n,
        "features": args.features,
        "task": args.task,
        "split": args.split,
        "dataset_config": args.dataset_config,
        "value": args.value,
        "questions": len(setup.train),
        "budget": setup.budget,
        "test_masks": held_out,  # shapley has none
        "test_masks_asked": getattr(args, "test_masks", None),
        "seed": args.seed,
        "dtype": args.dtype,
        "model_dtype": str(parameter.dtype).removeprefix("torch."),
        "device": str(parameter.device),
        "batch_size": args.batch_size,
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":
    sys.exit(main())
