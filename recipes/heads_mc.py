"""Head interactions and pruning by layer group on multiple choice (paper §5.2, Fig. 9).

For each group of layers (start / middle / end of the network) and each seed: explain the mean
correct-option log-probability over the train questions by the group's attention heads,
split the energy into linear / within-layer / cross-layer parts (Fig. 9 bottom), with the
held-out R² of ProxySPEX and LASSO and the paired bootstrap interval of their difference, and for
several numbers of kept heads compare the test accuracy of the ProxySPEX plan (exact integer
programming on its spectrum, checked on the model) with the LASSO plan, Best-of-N random
kept-sets, greedy backward elimination and single-head ablation, every method at its counted
model calls (Fig. 9 top). Each accuracy comes with a score interval over the test questions
(Wilson's), and each method's difference to ProxySPEX with a paired one (Agresti-Min);
``--transfer`` also tests every plan on a second task it was not fitted on.

Defaults run on a 2-core CPU in about an hour per seed (docs/results.md records the table and
the time): SmolLM2-135M-Instruct (asset package) on the capital-city cloze, the last three
groups of three layers (27 heads each; earlier groups run more layers per mask, e.g.
``--groups 0-2 14-16 27-29`` costs 3-4 times more for its first two), 16 train questions.
``--paper`` reproduces the paper's protocol (appendix C.2): 5,000 uniform
masks, the train accuracy as the value, the first 120 questions as train in their order and
the rest as test, Best-of-5,000; with its model and task that is ``--model
meta-llama/Llama-3.1-8B-Instruct --task cais/mmlu --dataset-config high_school_us_history
--groups 29-31 --keep 96 64 32 --paper`` on a machine with hub access and a GPU.

Writes ``results.md``, ``heads_mc.png`` and ``results.json`` (one object per seed, task,
group, kept size and method: ``group``, ``kept``, ``method``, ``model_calls``,
``test_accuracy``, ``ci_low``, ``ci_high``, with ``diff``, ``diff_low``, ``diff_high`` to
ProxySPEX, ``train_value``, ``seed`` and ``task``) into ``--out``, rewritten after every kept
size so that a stopped run keeps the plans it finished. ``--device cuda`` runs the model on a
GPU (the default when one is available); the query cache in ``--out`` lets a rerun skip every
model call already made. ``--jobs N`` runs N (seed, group) studies at once, each in a process
with its own copy of the model, sharing that cache: a CPU's cores, or a few processes on one
GPU, which a single process leaves idle while it solves integer programs.

    python recipes/heads_mc.py
    python recipes/heads_mc.py --groups 0-9 10-19 20-29 --keep 0.9 0.7 0.5 --alpha 4 --seeds 0 1
    python recipes/heads_mc.py --seeds 0 1 --jobs 2 --quiet      # one study per core
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import partial
from pathlib import Path

import numpy as np

import compattr
from compattr.apps import models, plots, tasks
from compattr.apps.arguments import format_layers, held_out_count, keep_value, parse_layers
from compattr.apps.report import interval_text, markdown_table
from compattr.features.base import input_device, map_inputs
from compattr.optimize import ROUND_TIME_LIMIT, plan_size

from _common import parser, setup, write_results

#: The paper's protocol (appendix C.2); ``--paper`` sets these.
PAPER = {"budget": 5000, "metric": "accuracy", "train_questions": 120, "ordered": True, "best_of": 5000}


def load_tasks(args):
    """The questions, and the transfer task's questions (or None)."""
    questions = tasks.load(args.task, split=args.split, config=args.dataset_config)
    return questions, tasks.load(args.transfer) if args.transfer else None


def load_model(args, dtype: str | None = None):
    """Model and tokenizer in ``dtype`` (default ``args.dtype``, which must not be "auto":
    :func:`choose_dtype` first)."""
    return models.load_model(args.model, dtype=dtype or args.dtype, device=args.device)  # "smollm2" is an alias


def choose_dtype(args, questions) -> None:
    """Replace ``args.dtype`` "auto" by the faster dtype on this machine, timed on one
    query's rows of ``questions`` on the model's device; any other dtype stays."""
    if args.dtype != "auto":
        return
    model, tokenizer = load_model(args, "float32")
    inputs, value = questions[: args.train_questions].encode(tokenizer, metric=args.metric)
    inputs = map_inputs(lambda t: t.to(input_device(model)), inputs)
    rows, _ = value.prepare(model, inputs, 0)
    args.dtype, _ = models.fastest_dtype(lambda dtype: load_model(args, dtype)[0], rows)


def study_group(
    args, seed, model, tokenizer, train, test, transfer, layers: list[int], save: Callable[[dict, list[dict]], None]
) -> tuple[dict, list[dict]]:
    """Explain one layer group; return its energy row and one row per (task, kept, method).

    ``save(energy, rows)`` is called with the rows so far after the explanation and after each
    kept size, so that a stopped run keeps every plan it finished.
    """
    heads = compattr.AttentionHeads(model, layers=layers)
    inputs, value = train.encode(tokenizer, metric=args.metric)
    label = f"L{format_layers(layers)}"
    start = time.perf_counter()
    ex = compattr.explain(
        model,
        heads,
        value,
        inputs,
        budget=args.budget,
        alpha=None if args.budget else args.alpha,
        test_masks=args.test_masks,
        seed=seed,
        cache_dir=args.out / "queries",
        progress=not args.quiet,
    )
    e = ex.energy()
    energy = {
        "seed": seed,
        "group": label,
        "heads": heads.n,
        "masks": len(ex.masks),
        "R² ProxySPEX": ex.faithfulness,
        "R² LASSO": ex.lasso_faithfulness,
        # the paired bootstrap over the held-out masks: a gap inside it is no evidence either way
        "R² difference [95 %]": interval_text(ex.faithfulness_interval(against_lasso=True), signed=True),
        "linear": e.linear,
        "within-layer": e.within,
        "cross-layer": e.cross,
    }
    ex.save(args.out / f"explanation-{label}-seed{seed}")
    rows: list[dict] = []

    def checkpoint() -> None:
        energy["seconds"] = time.perf_counter() - start
        save(energy, rows)

    checkpoint()
    for keep in args.keep:
        size = plan_size(keep, heads.n, name="--keep")
        plans, table = tasks.compare_plans(
            ex,
            model,
            tokenizer,
            heads,
            train,
            test,
            size,
            metric=args.metric,
            best_of=args.best_of,
            time_limit=args.ilp_seconds,
            seed=seed,
            cache_dir=args.out / "queries",
            progress=not args.quiet,
        )
        rows += [_row(seed, args.task, label, dict(r)) for _, r in table.iterrows()]
        if transfer is not None:  # the same plans on questions of a task they were not fitted on
            K = [np.ones(heads.n, bool), *(plan.kept for plan in plans.values())]
            right = tasks.answered(model, tokenizer, transfer, heads, np.stack(K))
            accuracy = tasks.accuracy_intervals(right, table["method"])
            transferred = table.drop(columns=accuracy.columns).join(accuracy)
            rows += [_row(seed, args.transfer, label, dict(r)) for _, r in transferred.iterrows()]
        checkpoint()
    return energy, rows


def _row(seed: int, task: str, group: str, r: dict) -> dict:
    """One results.json object from a row of compare_plans' table."""
    return {
        "seed": seed,
        "task": task,
        "group": group,
        "kept": int(r["heads kept"]),
        "method": r["method"],
        "model_calls": int(r["model calls"]),
        "test_accuracy": float(r["test accuracy"]),
        "ci_low": float(r["ci low"]),
        "ci_high": float(r["ci high"]),
        "diff": float(r["vs ProxySPEX"]),
        "diff_low": float(r["vs low"]),
        "diff_high": float(r["vs high"]),
        "train_value": float(r["train value"]),
    }


def verdict(rows: list[dict]) -> list[dict]:
    """Per (task, group, kept): ProxySPEX's test accuracy against the best baseline's, and
    how many baselines it beats with a 95 % interval of the difference above zero."""
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["method"] != "unpruned":
            cells.setdefault((r["task"], r["group"], r["kept"], r["seed"]), []).append(r)
    out = []
    for (task, group, kept, seed), cell in cells.items():
        ours = next(r for r in cell if r["method"] == "ProxySPEX")
        others = [r for r in cell if r["method"] != "ProxySPEX"]
        best = max(others, key=lambda r: r["test_accuracy"])
        out.append(
            {
                "seed": seed,
                "task": task,
                "group": group,
                "kept": kept,
                "ProxySPEX": ours["test_accuracy"],
                "best baseline": f"{best['method']} {best['test_accuracy']:.3f}",
                "ProxySPEX ≥ all": ours["test_accuracy"] >= best["test_accuracy"],
                "significantly better than": sum(r["diff_high"] < 0 for r in others),
                "of": len(others),
            }
        )
    return out


def plot(energy: list[dict], rows: list[dict], task: str):
    """Test accuracy vs kept heads per group and method (top), energy split per group (bottom),
    first seed."""
    from matplotlib.figure import Figure

    seed = energy[0]["seed"]
    energy = [e for e in energy if e["seed"] == seed]
    rows = [r for r in rows if r["seed"] == seed and r["task"] == task]
    fig = Figure(figsize=(4 * len(energy), 6.5))
    axes = fig.subplots(2, len(energy), squeeze=False)
    for j, group in enumerate(e["group"] for e in energy):
        ax = axes[0, j]
        sel = [r for r in rows if r["group"] == group and r["method"] != "unpruned"]
        for method in dict.fromkeys(r["method"] for r in sel):
            pts = sorted(
                (r["kept"], r["test_accuracy"], r["ci_low"], r["ci_high"]) for r in sel if r["method"] == method
            )
            kept, acc, low, high = map(list, zip(*pts))
            err = [[a - lo for a, lo in zip(acc, low)], [h - a for a, h in zip(acc, high)]]
            ax.errorbar(kept, acc, yerr=err, marker="o", capsize=2, label=method)
        for full in [r["test_accuracy"] for r in rows if r["group"] == group and r["method"] == "unpruned"][:1]:
            ax.axhline(full, color="grey", ls="--", label="unpruned")  # none before the first plan
        ax.set_title(f"{group} (seed {seed})")
        ax.set_xlabel("heads kept")
        ax.set_ylabel(f"test accuracy on {task} (95 % CI)")
    if rows:  # none before the first plan
        axes[0, 0].legend(fontsize=7)
    for j, e in enumerate(energy):
        ax = axes[1, j]
        parts = ("linear", "within-layer", "cross-layer")
        ax.bar(parts, [e[p] for p in parts], color=["#4c72b0", "#dd8452", "#55a868"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of the spectrum's energy")
    fig.tight_layout()
    return fig


def parse_args(argv=None):
    """The recipe's settings; ``--paper`` replaces them by the paper's protocol (:data:`PAPER`)."""
    p = parser(__doc__, "results/heads_mc")
    p.add_argument("--model", default="smollm2", help="'smollm2', a HF model id or a local folder")
    p.add_argument(
        "--task",
        default="capitals",
        help="'capitals', 'continents', a JSONL question file, or a datasets name or folder (MMLU columns)",
    )
    p.add_argument("--split", default=None, help="the datasets split of --task (default: test)")
    p.add_argument("--dataset-config", default=None, help="the datasets configuration of --task")
    p.add_argument("--transfer", default=None, help="a second task every plan is also tested on (e.g. continents)")
    p.add_argument("--groups", nargs="+", default=["21-23", "24-26", "27-29"], help="layer groups, e.g. 0-9")
    p.add_argument(
        "--keep",
        type=keep_value,
        nargs="+",
        default=[0.7, 0.5, 0.3],
        help="heads kept, per plan: counts 1..n (27) or fractions in (0, 1] (0.3, 30%%)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="several seeds (default: --seed)")
    p.add_argument("--train-questions", type=int, default=16)
    p.add_argument("--metric", choices=["logprob", "accuracy"], default="logprob", help="the train value")
    p.add_argument(
        "--dtype",
        default="auto",
        help="model dtype; 'auto' (default) times float32 and bfloat16 on this machine and takes the faster",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available, else cpu)")
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--budget", type=int, default=None, help="fitting masks (default: alpha n log2 n)")
    p.add_argument("--test-masks", type=held_out_count, default=100)
    p.add_argument("--best-of", type=int, default=None, help="Best-of-N draws (default: ProxySPEX's model calls)")
    p.add_argument(
        "--ilp-seconds",
        type=float,
        default=ROUND_TIME_LIMIT,
        help="seconds for each verification round's integer program (default %(default)g; a thousand "
        "terms at --paper's 5,000 masks make the exact program take minutes)",
    )
    p.add_argument(
        "--paper", action="store_true", help="the paper's protocol: " + ", ".join(f"{k}={v}" for k, v in PAPER.items())
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="(seed, group) studies run at once, each in a process with its own copy of the model on --device "
        "(a GPU's few processes, a CPU's cores); they share the query cache",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    args.ordered = False
    if args.paper:
        vars(args).update(PAPER)
    args.seeds = args.seeds or [args.seed]
    args.device = args.device or models.default_device()
    return args


def split(args, questions, seed: int):
    """``(train, test)``: the first ``--train-questions`` in their order under ``--paper``,
    else a split shuffled by ``seed``."""
    return questions.split(train=args.train_questions, seed=None if args.ordered else seed)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = setup(args)
    questions, transfer = load_tasks(args)
    studies = [(seed, parse_layers(group)) for seed in args.seeds for group in args.groups]
    n_train, n_test = (len(part) for part in split(args, questions, args.seeds[0]))
    found: dict[int, tuple[dict, list[dict]]] = {}  # study -> its energy row and rows so far

    def save(study: int, e: dict, r: list[dict]) -> None:  # nothing lost on a crash
        found[study] = e, r
        done = [found[i] for i in sorted(found)]  # in the order of a run with --jobs 1
        report(args, out, [e for e, _ in done], [row for _, r in done for row in r], n_train, n_test, transfer)

    choose_dtype(args, questions)  # once, here, so that every worker uses the same
    if args.jobs == 1:
        model, tokenizer = load_model(args)
        for i, (seed, layers) in enumerate(studies):
            train, test = split(args, questions, seed)
            e, _ = study_group(args, seed, model, tokenizer, train, test, transfer, layers, partial(save, i))
            print(markdown_table([e]), flush=True)
    else:  # each worker loads its own model
        for i in _in_workers(args, studies, save):
            print(markdown_table([found[i][0]]), flush=True)
    path = out / "results.md"
    print(markdown_table(verdict([row for i in sorted(found) for row in found[i][1]])))
    print(f"wrote {path} and {out / 'results.json'}")


def _in_workers(args, studies: list[tuple[int, list[int]]], save: Callable[[int, dict, list[dict]], None]):
    """Run the ``(seed, layers)`` studies in ``args.jobs`` processes, each with its own model
    (they share the query cache, which several processes may append to). Every worker's
    rows reach ``save(study, energy, rows)`` in this process as they come; yields each study
    when it is done. A study that fails cancels those not started; the running ones finish
    and are saved, then its error is raised."""
    context = mp.get_context("spawn")  # CUDA cannot be forked
    error: BaseException | None = None
    with context.Manager() as manager:
        updates = manager.Queue()
        with ProcessPoolExecutor(args.jobs, context, initializer=_worker_start, initargs=(args, updates)) as pool:
            pending = {pool.submit(_worker_study, i, seed, layers) for i, (seed, layers) in enumerate(studies)}
            while pending:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                while not updates.empty():  # a worker's last update is queued before it returns
                    save(*updates.get())
                for future in finished:
                    if future.cancelled():
                        continue
                    if future.exception() is None:
                        yield future.result()
                    elif error is None:
                        error = future.exception()
                        for other in pending:  # only those not started yet can be cancelled
                            other.cancel()
    if error is not None:
        raise error


_WORKER: dict = {}  # a worker process's model, questions and update queue (_worker_start)


def _worker_start(args, updates) -> None:
    setup(args)
    questions, transfer = load_tasks(args)
    model, tokenizer = load_model(args)  # in the dtype the parent chose
    _WORKER.update(args=args, model=model, tokenizer=tokenizer, questions=questions, transfer=transfer, updates=updates)


def _worker_study(study: int, seed: int, layers: list[int]) -> int:
    w = _WORKER
    train, test = split(w["args"], w["questions"], seed)

    def send(e: dict, r: list[dict]) -> None:  # pickled by put, before the study goes on
        w["updates"].put((study, e, r))

    study_group(w["args"], seed, w["model"], w["tokenizer"], train, test, w["transfer"], layers, send)
    return study


def report(args, out, energy: list[dict], rows: list[dict], n_train: int, n_test: int, transfer) -> Path:
    """Write ``results.json``, ``heads_mc.png`` and ``results.md`` for the plans done so far."""
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    figure = plots.save(plot(energy, rows, args.task), out / "heads_mc.png")
    return write_results(
        out,
        "Heads by layer group: interactions and pruning on multiple choice",
        [
            (
                "Setup",
                f"model {args.model} ({args.dtype}, {args.device}), "
                f"task {args.task}: {n_train} train / {n_test} test questions"
                + ("" if transfer is None else f", plans also tested on {args.transfer} ({len(transfer)} questions)")
                + f"; value {args.metric}; "
                + (f"{args.budget} masks" if args.budget else f"alpha {args.alpha}")
                + f", {args.test_masks} held-out masks; seeds {args.seeds}. Model calls: ProxySPEX = fitting masks + "
                "verification; greedy gets ProxySPEX's calls, Best-of-N "
                + ("as many" if args.best_of is None else f"{args.best_of} random kept-sets")
                + "; intervals: 95 % score intervals over the test questions (Wilson; the "
                "differences to ProxySPEX paired, Agresti-Min).",
            ),
            ("Faithfulness and energy split per group (Fig. 9 bottom)", markdown_table(energy)),
            ("Did ProxySPEX win? (per cell: its accuracy vs the best baseline's)", markdown_table(verdict(rows))),
            ("Test accuracy of the plans (Fig. 9 top)", markdown_table(rows)),
            ("Figure", f"`{figure.name}`"),
        ],
    )


if __name__ == "__main__":
    main()
