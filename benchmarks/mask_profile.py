"""Where one masked query of the demo spends its time, next to the arithmetic it needs.

    python benchmarks/mask_profile.py                    # the demo: SmolLM2, layers 24-29, 16 questions
    python benchmarks/mask_profile.py --layers 0-2 --dtype float32

One query = one head mask on the train questions of ``make demo`` (capital-city cloze, the
options packed behind their prompt). The script times, per forward pass, the modules the
masked rows run through (embedding, the leading layers that layer replay skips, the layers
from the first masked one to the last, final norm, the output projection over the
vocabulary) with forward hooks, and
reports the rest of the query's wall time as Python and framework overhead. It then counts
the multiply-adds of those layers (projections, attention scores, MLP) and of the
output projection at the positions scored, and prints the rate each part reached.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
import torch

import compattr
from compattr.apps import tasks
from compattr.apps.arguments import parse_layers
from compattr.models import smollm2


class Timer:
    """Wall time per named module, summed over forward passes (forward hooks)."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._start: dict[str, float] = {}
        self._handles = []
        for name, module in modules.items():
            self._handles.append(module.register_forward_pre_hook(self._enter(name)))
            self._handles.append(module.register_forward_hook(self._leave(name)))

    def _enter(self, name):
        def hook(module, args):
            self._start[name] = time.perf_counter()

        return hook

    def _leave(self, name):
        def hook(module, args, output):
            self.seconds[name] += time.perf_counter() - self._start.pop(name)
            self.calls[name] += 1

        return hook

    def reset(self) -> None:
        self.seconds.clear()
        self.calls.clear()

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def layer_flops(config, tokens: int, context: float) -> float:
    """Multiply-adds x 2 of one decoder layer over ``tokens`` rows-positions, each attending
    to ``context`` positions on average."""
    d, inter = config.hidden_size, config.intermediate_size
    hd = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q, kv = config.num_attention_heads * hd, config.num_key_value_heads * hd
    projections = d * (q + 2 * kv) + q * d
    mlp = 3 * d * inter  # gate, up, down
    attention = 2 * config.num_attention_heads * hd * context  # scores and weighted sum
    return 2.0 * tokens * (projections + mlp + attention)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layers", type=parse_layers, default=parse_layers("24-29"))
    p.add_argument("--train-questions", type=int, default=16)
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--masks", type=int, default=16, help="masks timed (one query each)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    model, tokenizer = smollm2(dtype=args.dtype)
    train, _ = tasks.capitals(seed=0).split(train=args.train_questions)
    inputs, value = train.encode(tokenizer)
    heads = compattr.AttentionHeads(model, layers=args.layers)
    query = compattr.Query(model, heads, value, inputs)
    masks = np.random.default_rng(0).random((args.masks + 1, heads.n)) < 0.5
    query.evaluate(masks[:1])  # prepare and capture the replayed layers: not part of a query
    base = model.model
    first = min(args.layers)
    modules = {"embedding": base.embed_tokens, "final norm": base.norm, "output projection": model.lm_head}
    modules |= {f"layer {i}": layer for i, layer in enumerate(base.layers)}
    timer = Timer(modules)
    walls = []
    for m in masks[1:]:
        start = time.perf_counter()
        query.evaluate(m[None])
        walls.append(time.perf_counter() - start)
    timer.remove()
    wall = float(np.sum(walls))
    last = base.config.num_hidden_layers - 1
    leading = sum(v for k, v in timer.seconds.items() if k.startswith("layer ") and int(k[6:]) < first)
    # every layer from the first masked one on runs per mask: the masked ones and those after them
    masked = sum(v for k, v in timer.seconds.items() if k.startswith("layer ") and int(k[6:]) >= first)
    run = f"layers {first}-{last} run per mask (heads masked in {first}-{max(args.layers)})"
    parts = {"embedding": timer.seconds["embedding"]}
    if first > 0:
        parts[f"leading layers 0-{first - 1} (replayed)"] = leading
    parts |= {
        run: masked,
        "final norm": timer.seconds["final norm"],
        "output projection (vocabulary)": timer.seconds["output projection"],
    }
    parts["Python, hooks, value, rest"] = wall - sum(parts.values())
    # arithmetic of one query: the packed rows' real tokens through the masked layers
    rows, targets = value.prepare(model, query.inputs, 64)
    real = rows["attention_mask"]
    tokens = int((real.sum() if real.ndim == 2 else real.any(-1).sum()).item())
    n_layers = last + 1 - first  # the layers run per mask, as timed above
    flops_layers = n_layers * layer_flops(base.config, tokens, context=tokens / len(real) / 2)
    d, vocab = base.config.hidden_size, base.config.vocab_size
    seen: list[tuple] = []  # what the output projection is given in one query
    hook = model.lm_head.register_forward_hook(lambda m, a, out: seen.append(tuple(a[0].shape)))
    query.evaluate(masks[:1])
    hook.remove()
    computed = int(np.prod(seen[-1][:-1]))
    scored = int((targets["option"] >= 0).sum()) if "option" in targets else int(targets["scored"].sum())
    flops_needed, flops_vocab = 2.0 * scored * d * vocab, 2.0 * computed * d * vocab
    per_query = wall / args.masks
    print(
        f"SmolLM2-135M-Instruct {args.dtype}, 1 thread, heads of layers {first}-{max(args.layers)}, "
        f"{len(train)} questions ({len(real)} packed rows, {tokens} real tokens); median query "
        f"{np.median(walls):.3f} s over {args.masks} masks\n"
    )
    print("| part | seconds per query | share |\n|---|---|---|")
    for name, seconds in parts.items():
        print(f"| {name} | {seconds / args.masks:.4f} | {seconds / wall:.0%} |")
    print("\n| arithmetic per query | GFLOP | GFLOP/s reached |\n|---|---|---|")
    print(f"| layers {first}-{last} | {flops_layers / 1e9:.2f} | {flops_layers / 1e9 / (masked / args.masks):.1f} |")
    vocab_s = max(parts["output projection (vocabulary)"] / args.masks, 1e-9)
    print(
        f"| output projection: {computed} positions computed, {scored} needed | {flops_vocab / 1e9:.2f} "
        f"(needed {flops_needed / 1e9:.2f}) | {flops_vocab / 1e9 / vocab_s:.1f} |"
    )
    print(f"\nwhole query: {(flops_layers + flops_vocab) / 1e9 / per_query:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
