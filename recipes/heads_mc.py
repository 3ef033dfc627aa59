"""Head interactions and pruning by layer group on multiple choice (paper §5.2, Fig. 9).

For each group of layers (start / middle / end of the network): explain the mean
correct-option log-probability over the train questions by the group's attention heads,
split the energy into linear / within-layer / cross-layer parts (Fig. 9 bottom), and for
several numbers of kept heads compare the test accuracy of the ProxySPEX plan (exact ILP on
its spectrum) with the LASSO plan and Best-of-N random kept-sets (Fig. 9 top).

Defaults run on a laptop CPU (docs/results.md records the time): SmolLM2-135M-Instruct
(asset package) on the capital-city cloze, three groups of three layers (27 heads each), 16
train questions.
The paper's setup (Llama-3.1-8B on MMLU's high-school US history, 120 train questions,
alpha 4, Best-of-5000) is ``--model meta-llama/Llama-3.1-8B-Instruct --task cais/mmlu
--paper`` on a machine with hub access and a GPU.

    python recipes/heads_mc.py
    python recipes/heads_mc.py --groups 0-9 10-19 20-29 --keep 0.9 0.7 0.5 --alpha 4
"""

from __future__ import annotations

import time

import compattr
from compattr.apps import models, plots, tasks
from compattr.apps.cli import format_layers, keep_value, parse_layers
from compattr.apps.report import markdown_table
from compattr.optimize import plan_size

from _common import parser, setup, write_results

PAPER = {"train_questions": 120, "alpha": 4.0, "test_masks": 1000, "best_of": 5000}


def load(args):
    """Model, tokenizer and the (train, test) question split."""
    load_model = models.smollm2 if args.model == "smollm2" else lambda **kw: models.load_model(args.model, **kw)
    model, tokenizer = load_model(dtype=args.dtype)
    questions = tasks.capitals(seed=args.seed) if args.task == "capitals" else tasks.from_jsonl(args.task)
    train, test = questions.split(train=args.train_questions, seed=args.seed)
    return model, tokenizer, train, test


def study_group(args, model, tokenizer, train, test, layers: list[int]) -> tuple[dict, list[dict]]:
    """Explain one layer group; return its energy row and one row per (kept size, method)."""
    heads = compattr.AttentionHeads(model, layers=layers)
    inputs, value = train.encode(tokenizer)
    label = f"L{format_layers(layers)}"
    cache = args.out / "queries" / label
    start = time.perf_counter()
    ex = compattr.explain(
        model,
        heads,
        value,
        inputs,
        alpha=args.alpha,
        test_masks=args.test_masks,
        seed=args.seed,
        cache_dir=cache,
        progress=not args.quiet,
    )
    e = ex.energy()
    energy = {
        "group": label,
        "heads": heads.n,
        "R² ProxySPEX": ex.faithfulness,
        "R² LASSO": ex.lasso_faithfulness,
        "linear": e.linear,
        "within-layer": e.within,
        "cross-layer": e.cross,
    }
    rows = []
    for keep in args.keep:
        size = plan_size(keep, heads.n, name="--keep")
        _, table = tasks.compare_plans(
            ex,
            model,
            tokenizer,
            heads,
            train,
            test,
            size,
            best_of=args.best_of,
            seed=args.seed,
            cache_dir=cache,
            progress=not args.quiet,
        )
        rows += [
            {
                "group": label,
                "kept": int(r["heads kept"]),
                "method": r["method"],
                "train value": float(r["train value"]),
                "test accuracy": float(r["test accuracy"]),
            }
            for _, r in table.iterrows()
        ]
    energy["seconds"] = time.perf_counter() - start
    ex.save(args.out / f"explanation-{label}")
    return energy, rows


def plot(energy: list[dict], rows: list[dict]):
    """Test accuracy vs kept heads per group and method (top), energy split per group (bottom)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(energy), 6.5))
    axes = fig.subplots(2, len(energy), squeeze=False)
    for j, group in enumerate(e["group"] for e in energy):
        ax = axes[0, j]
        sel = [r for r in rows if r["group"] == group and r["method"] != "unpruned"]
        for method in dict.fromkeys(r["method"] for r in sel):
            pts = sorted((r["kept"], r["test accuracy"]) for r in sel if r["method"] == method)
            ax.plot(*zip(*pts), marker="o", label=method)
        full = [r["test accuracy"] for r in rows if r["group"] == group and r["method"] == "unpruned"]
        ax.axhline(full[0], color="grey", ls="--", label="unpruned")
        ax.set_title(group)
        ax.set_xlabel("heads kept")
        ax.set_ylabel("test accuracy")
    axes[0, 0].legend(fontsize=7)
    for j, e in enumerate(energy):
        ax = axes[1, j]
        parts = ("linear", "within-layer", "cross-layer")
        ax.bar(parts, [e[p] for p in parts], color=["#4c72b0", "#dd8452", "#55a868"])
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of energy")
    fig.tight_layout()
    return fig


def main(argv=None) -> None:
    p = parser(__doc__, "results/heads_mc")
    p.add_argument("--model", default="smollm2", help="'smollm2', a HF model id or a local folder")
    p.add_argument("--task", default="capitals", help="'capitals' or a JSONL question file")
    p.add_argument("--groups", nargs="+", default=["0-2", "14-16", "27-29"], help="layer groups, e.g. 0-9")
    p.add_argument(
        "--keep",
        type=keep_value,
        nargs="+",
        default=[0.7, 0.5, 0.3],
        help="heads kept, per plan: counts 1..n (27) or fractions in (0, 1] (0.3, 30%%)",
    )
    p.add_argument("--train-questions", type=int, default=16)
    p.add_argument(
        "--dtype",
        default="bfloat16",
        help="model dtype (bfloat16 ran faster than float32 on the CPU of docs/results.md)",
    )
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--test-masks", type=int, default=200)
    p.add_argument("--best-of", type=int, default=100)
    p.add_argument(
        "--paper", action="store_true", help="paper scale: " + ", ".join(f"{k}={v}" for k, v in PAPER.items())
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.paper:
        for key, val in PAPER.items():
            setattr(args, key, val)
    out = setup(args)
    model, tokenizer, train, test = load(args)
    energy, rows = [], []
    for group in args.groups:
        e, r = study_group(args, model, tokenizer, train, test, parse_layers(group))
        energy.append(e)
        rows += r
        print(markdown_table([e]), flush=True)
    figure = plots.save(plot(energy, rows), out / "heads_mc.png")
    path = write_results(
        out,
        "Heads by layer group: interactions and pruning on multiple choice",
        [
            (
                "Setup",
                f"model {args.model}, task {args.task}: {len(train)} train / {len(test)} test questions; "
                f"alpha {args.alpha}, {args.test_masks} held-out masks, Best-of-{args.best_of}.",
            ),
            ("Faithfulness and energy split per group (Fig. 9 bottom)", markdown_table(energy)),
            ("Test accuracy of the plans (Fig. 9 top)", markdown_table(rows)),
            ("Figure", f"`{figure.name}`"),
        ],
    )
    print(markdown_table(rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
