"""What the query cache's model fingerprint costs, next to one masked query of the same model.

    python benchmarks/fingerprint_cost.py        # SmolLM2-135M-Instruct (needs `make assets`)

The fingerprint hashes every byte of every parameter and buffer, once per ``run_queries`` call
with a ``cache_dir``; a query is one masked forward pass of one prompt. Prints the fastest of
three fingerprints and the median of eight single-mask queries.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from compattr.features import AttentionHeads
from compattr.models import smollm2
from compattr.query import Query, model_fingerprint
from compattr.values import ClassLogit


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    model, tokenizer = smollm2()
    size = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20
    fingerprint = [seconds(lambda: model_fingerprint(model)) for _ in range(3)]
    inputs = dict(tokenizer(["The capital of France is"], return_tensors="pt"))
    query = Query(model, AttentionHeads(model), ClassLogit(), inputs)
    masks = np.random.default_rng(0).random((9, query.n)) < 0.5
    query.evaluate(masks[:1])  # warm-up: the unmasked forward of prepare
    queries = [seconds(lambda m=m: query.evaluate(m[None])) for m in masks[1:]]
    print(f"SmolLM2-135M-Instruct, {size:.0f} MiB of parameters and buffers, 1 torch thread")
    print("| | seconds |\n|---|---|")
    print(f"| model_fingerprint (fastest of 3) | {min(fingerprint):.3f} |")
    print(f"| one masked query (median of 8) | {np.median(queries):.3f} |")


if __name__ == "__main__":
    main()
