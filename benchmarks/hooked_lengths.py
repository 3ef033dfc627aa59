"""Which token lengths reach the head-masking hooks in the recipes' and the demo's queries.

Until the layout of a hooked tensor was fixed by its hook site, a batch whose padded length T
equalled the number of heads H was masked along the tokens instead of the heads. This script
records every hooked tensor's shape in the head queries that the published numbers came from
and prints, per workload, the lengths seen and whether any equals H:

    python benchmarks/hooked_lengths.py            # demo / heads_mc (SmolLM2) + induction heads

Needs the offline assets for SmolLM2 (``make assets``); the induction testbed is built here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

import compattr
from compattr import tasks

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))


class LengthSpy:
    """Records the token axes of every tensor the head hooks mask (all but batch and width)."""

    def __init__(self):
        self.seen: set[tuple[int, ...]] = set()
        self._apply = compattr.AttentionHeads._apply

    def __enter__(self):
        spy = self

        def apply(heads, pos, x):
            spy.seen.add(tuple(x.shape[1:-1]))
            return spy._apply(heads, pos, x)

        compattr.AttentionHeads._apply = apply
        return self

    def __exit__(self, *exc):
        compattr.AttentionHeads._apply = self._apply


def smollm2_rows() -> tuple[int, set]:
    """The demo's and heads_mc's queries: capitals questions, both values, train and test."""
    from compattr.models import smollm2

    model, tokenizer = smollm2()
    questions = tasks.capitals(seed=0)
    heads = compattr.AttentionHeads(model, layers=list(range(24, 30)))
    with LengthSpy() as spy:
        for n_train in (8, 16, 120):
            train, test = questions.split(train=n_train)
            for part in (train, test):
                for metric in ("logprob", "accuracy"):
                    inputs, value = part.encode(tokenizer, metric=metric)
                    compattr.Query(model, heads, value, inputs).evaluate(np.ones((1, heads.n), bool))
    return heads.n_heads, spy.seen


def induction_rows() -> tuple[int, set]:
    """The induction-heads recipe's testbed (untrained weights: only shapes matter here)."""
    import induction_heads as recipe

    config = recipe.InductionConfig()
    model = recipe.ToyTransformer(config).eval()
    tokens, _ = recipe.induction_batch(np.random.default_rng(0), 8, config)
    heads = compattr.AttentionHeads(model)
    with LengthSpy() as spy, torch.no_grad(), heads.masked(np.ones(heads.n, bool)):
        model(tokens)
    return heads.n_heads, spy.seen


def main() -> None:
    torch.set_num_threads(1)
    print("| workload | heads per layer H | token lengths at the hooks | any T = H |")
    print("|---|---|---|---|")
    for name, run in (("demo / heads_mc (SmolLM2, capitals)", smollm2_rows), ("induction heads", induction_rows)):
        H, seen = run()
        lengths = sorted({t for shape in seen for t in shape})
        print(f"| {name} | {H} | {', '.join(map(str, lengths))} | {'YES' if H in lengths else 'no'} |")


if __name__ == "__main__":
    main()
