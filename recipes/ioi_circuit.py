"""Indirect-object identification: ProxySPEX recovers a trained circuit, checked on every mask.

A 3-layer attention-only transformer (4 heads per layer; ``--mlp`` adds MLP blocks) is trained
on synthetic IOI sentences, a two-step composition as in Wang et al. (2022)'s "When Mary and
John went to the store, John gave a drink to ___": two distinct names, fillers, the *subject*
name again, fillers, and an end token after which the model must name the *indirect object*,
the name that occurred once::

    [fillers] IO S [fillers] S [fillers] END -> IO      (or S IO ..., in either order)

No single token says which name to copy: the model must first notice which name is repeated,
then move the other one to the end. The features are its 12 heads (and 3 MLPs); a masked
component outputs what it outputs on the *ABC* twin of the sentence (the second ``S`` replaced
by a third name, so nothing is repeated), the corruption of the IOI paper. The value is the
logit difference ``IO - S`` at the end token, averaged over fixed sentences.

With 12 features every one of the 4,096 masks is evaluated (32,768 with MLPs), so the truth is known by
exhaustive ablation (``recipes/_circuits.py``): the circuit is the union of the smallest
kept-sets that recover 80 % of the full logit difference, the true interactions the 5
strongest exact pairwise (Banzhaf) interactions. The recipe reports how well ProxySPEX (at
``--alpha`` masks), single-component ablation (n + 1 calls) and attribution patching (one
forward and one backward pass) recover both, and ProxySPEX's R² on every mask.

Run::

    python recipes/ioi_circuit.py                 # about 3 minutes on one CPU thread
    python recipes/ioi_circuit.py --mlp           # heads and MLPs: about 12 minutes

The trained weights, the queries and the exhaustive table are cached in ``--out``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import compattr
from compattr.apps import plots
from compattr.apps.report import markdown_table
from compattr.features.base import digest
from compattr.query.values import Value

from _circuits import Circuit, circuit_text, exhaustive_circuit, recovery_table, single_ablation
from _common import parser, setup, write_results
from _toy_transformer import (
    ToyConfig,
    ToyTransformer,
    add_training_arguments,
    all_masks,
    exact_spectrum,
    faithfulness_on_every_mask,
    load_or_train,
)


# --------------------------------------------------------------------------- task
@dataclass(frozen=True)
class IOIConfig(ToyConfig):
    """The model's shape and the task's: ``names`` name tokens (ids ``0 ..``), ``fillers``
    filler tokens after them, then the end token; ``vocab`` must hold them all."""

    vocab: int = 48
    seq_len: int = 12
    n_layers: int = 3
    names: int = 16
    fillers: int = 24

    @property
    def end(self) -> int:
        return self.names + self.fillers


def ioi_batch(
    rng: np.random.Generator, size: int, config: IOIConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random IOI sentences.

    Returns
    -------
    tokens : (size, seq_len) int64 tensor
        ``[fillers] A B [fillers] S [fillers] END`` with ``{A, B} = {IO, S}`` in random order.
    io, subject : (size,) int64 tensors
        The indirect object (the answer) and the repeated subject.
    """
    if config.end >= config.vocab or config.seq_len < 8:
        raise ValueError("the vocabulary must hold names, fillers and the end token, and seq_len be >= 8.")
    io = rng.integers(0, config.names, size)
    subject = (io + rng.integers(1, config.names, size)) % config.names
    tokens = rng.integers(config.names, config.end, (size, config.seq_len))
    start = rng.integers(0, 3, size)
    gap = rng.integers(1, 4, size)
    swap = rng.random(size) < 0.5
    rows = np.arange(size)
    tokens[rows, start] = np.where(swap, subject, io)
    tokens[rows, start + 1] = np.where(swap, io, subject)
    tokens[rows, start + 2 + gap] = subject
    tokens[:, -1] = config.end
    return torch.from_numpy(tokens), torch.from_numpy(io), torch.from_numpy(subject)


def abc_twins(
    rng: np.random.Generator, tokens: torch.Tensor, io: torch.Tensor, subject: torch.Tensor, names: int
) -> torch.Tensor:
    """Each sentence with its second subject replaced by a third name (neither IO nor S):
    every name occurs once, so nothing tells which to copy."""
    third = torch.from_numpy(rng.integers(0, names - 2, len(tokens)))
    third = third + (third >= torch.minimum(io, subject)).long()
    third = third + (third >= torch.maximum(io, subject)).long()
    corrupted = tokens.clone()
    repeat = (tokens == subject[:, None]).long().cumsum(1) == 2
    corrupted[repeat & (tokens == subject[:, None])] = third
    return corrupted


def training_loss(config: IOIConfig, batch_size: int = 64):
    """``loss(model, rng)``: cross-entropy of the indirect object at the end token."""

    def loss(model: ToyTransformer, rng: np.random.Generator) -> torch.Tensor:
        tokens, io, _ = ioi_batch(rng, batch_size, config)
        return torch.nn.functional.cross_entropy(model(tokens)[:, -1], io)

    return loss


class LogitDifference(Value):
    """Logit of the indirect object minus logit of the subject at the last position.

    Parameters
    ----------
    io, subject : (E,) int tensors
        Per sentence (the inputs), the right and the wrong name.
    """

    def __init__(self, io: torch.Tensor, subject: torch.Tensor):
        self.io, self.subject = io, subject

    def prepare(self, model, inputs, batch_size):
        return inputs, torch.stack([self.io, self.subject], 1).to(inputs.device)

    def score(self, model, inputs, targets):
        logits = model(inputs)[:, -1]
        picked = logits.gather(1, targets)
        return picked[:, 0] - picked[:, 1]

    def __repr__(self) -> str:
        return f"LogitDifference(names#{digest(torch.stack([self.io, self.subject]))})"


# --------------------------------------------------------------------------- run
@dataclass
class IOIRun:
    """What :func:`run` computed."""

    ex: compattr.Explanation
    values: np.ndarray
    accuracy: float
    circuit: Circuit
    recovery: list[dict]
    train_seconds: float | None
    explain_seconds: float
    exhaustive_seconds: float | None  # None: the table came from the cache


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__, "results/ioi_circuit")
    add_training_arguments(p, steps=1500)
    p.add_argument("--sentences", type=int, default=128, help="sentences the value averages over (default %(default)s)")
    p.add_argument(
        "--alpha",
        type=float,
        default=4.0,
        help="budget m = ceil(alpha n log2 n); n = 12: alpha 4 = 173 queries (default %(default)s)",
    )
    p.add_argument("--mlp", action="store_true", help="train a model with MLP blocks and explain them with the heads")
    p.add_argument(
        "--ablation",
        choices=("patch", "zero"),
        default="patch",
        help="a masked component outputs its output on the ABC twin, or zero (default %(default)s)",
    )
    return p


def exhaustive_values(query: compattr.MaskedModel, folder: Path) -> tuple[np.ndarray, float | None]:
    """The value on all ``2^n`` masks, cached in ``folder`` under the query's fingerprint, and
    the seconds it took (None when read from the cache)."""
    path = folder / f"all-masks-{digest(query.fingerprint())}.npy"
    if path.exists():
        return np.load(path), None
    clock = time.perf_counter()
    values = query.evaluate(all_masks(query.n))
    np.save(path, values)
    return values, time.perf_counter() - clock


def run(args: argparse.Namespace) -> IOIRun:
    """Train (or load) the model, explain its heads and MLPs, evaluate every mask, score the
    recovery of the circuit by ProxySPEX, single-component ablation and attribution patching."""
    out = setup(args)
    config = IOIConfig(mlp=args.mlp)
    model, train_seconds = load_or_train(out, "ioi", config, training_loss(config), args.steps, args.lr, args.seed)
    rng = np.random.default_rng([args.seed, 1])
    tokens, io, subject = ioi_batch(rng, args.sentences, config)
    with torch.no_grad():
        accuracy = float((model(tokens)[:, -1].argmax(-1) == io).float().mean())
    ablation, corrupted = "zero", None
    if args.ablation == "patch":
        ablation, corrupted = "patch", abc_twins(rng, tokens, io, subject, config.names)
    heads = compattr.AttentionHeads(model, rescale=False, ablation=ablation, corrupted=corrupted)
    features = heads + compattr.MLPBlocks(model, ablation=ablation, corrupted=corrupted) if args.mlp else heads
    value = LogitDifference(io, subject)
    batch_size = 16 * args.sentences
    clock = time.perf_counter()
    ex = compattr.explain(
        features=features,
        value=value,
        inputs=tokens,
        alpha=args.alpha,
        seed=args.seed,
        cache_dir=out / "queries",
        batch_size=batch_size,
        progress=False,
    )
    explain_seconds = time.perf_counter() - clock
    query = compattr.MaskedModel(model, features, value, tokens, batch_size=batch_size)
    values, exhaustive_seconds = exhaustive_values(query, out)
    circuit = exhaustive_circuit(values)
    recovery = recovery_table(circuit, ex, single_ablation(query.evaluate, features.n), query.mask_gradient())
    return IOIRun(ex, values, accuracy, circuit, recovery, train_seconds, explain_seconds, exhaustive_seconds)


# --------------------------------------------------------------------------- report
def strongest_pairs(ex: compattr.Explanation, exact: compattr.Spectrum, k: int = 8) -> list[dict]:
    """The ``k`` strongest pairwise Banzhaf interactions of the ``exact`` spectrum next to
    ProxySPEX's estimates."""
    truth = compattr.indices.banzhaf_interaction(exact, max_order=2)
    estimated = compattr.indices.banzhaf_interaction(ex.spectrum, max_order=2)
    top = sorted((t for t in truth if len(t) == 2), key=lambda t: -abs(truth[t]))[:k]
    return [
        {"pair": f"{ex.names[a]} × {ex.names[b]}", "exact": truth[(a, b)], "ProxySPEX": estimated.get((a, b), 0.0)}
        for a, b in top
    ]


def report_sections(args: argparse.Namespace, r: IOIRun) -> list[tuple[str, str]]:
    """The (heading, markdown) sections of ``results.md``."""
    ex, values = r.ex, r.values
    masks = all_masks(ex.n)
    exact = exact_spectrum(values)
    r2_all, r2_unseen = faithfulness_on_every_mask(ex, values)
    trained = "weights loaded from cache" if r.train_seconds is None else f"trained in {r.train_seconds:.0f} s"
    ablation = "patched from the ABC twin" if args.ablation == "patch" else "zero-ablated"
    exhaustive = "cached" if r.exhaustive_seconds is None else f"{r.exhaustive_seconds:.0f} s"
    kind = "attention + MLP" if args.mlp else "attention-only"
    e = ex.energy()
    fit = [
        {"check": "ProxySPEX held-out R² (explain's test masks)", "result": f"{ex.faithfulness:.3f}"},
        {"check": f"ProxySPEX R² on all {len(masks)} masks", "result": f"{r2_all:.3f}"},
        {"check": "ProxySPEX R² on the masks it was not fitted on", "result": f"{r2_unseen:.3f}"},
        {"check": "LASSO R² on all masks", "result": f"{compattr.faithfulness(ex.lasso, masks, values):.3f}"},
        {
            "check": "energy: linear / within-layer / cross-layer",
            "result": f"{e.linear:.1%} / {e.within:.1%} / {e.cross:.1%}",
        },
    ]
    components = [
        {"component": name, "in circuit": bool(c), "exact Banzhaf": b, "ProxySPEX Banzhaf": p}
        for name, c, b, p in zip(
            ex.names, r.circuit.components, compattr.indices.banzhaf(exact), compattr.indices.banzhaf(ex.spectrum)
        )
    ]
    return [
        (
            "Setup",
            f"3-layer {kind} transformer, {args.steps} training steps ({trained}); accuracy "
            f"{r.accuracy:.3f} on the {args.sentences} sentences of the value. Value: mean logit "
            f"difference IO − S at the end token, {values[-1]:.3f} with every component and "
            f"{values[0]:.3f} with none; components {ablation}. ProxySPEX fitted on "
            f"{len(ex.masks)} queries (alpha={args.alpha}) in {r.explain_seconds:.1f} s; all "
            f"{len(masks)} masks evaluated for the truth ({exhaustive}).\n",
        ),
        (
            "Circuit recovery",
            circuit_text(r.circuit, ex.names) + "\n" + markdown_table(r.recovery),
        ),
        ("Components", markdown_table(components)),
        ("Strongest pairwise interactions: exact vs ProxySPEX (Banzhaf)", markdown_table(strongest_pairs(ex, exact))),
        ("Faithfulness", markdown_table(fit)),
        ("compattr summary", f"```\n{ex.summary()}\n```"),
        ("Figures", "![circuit](circuit.png)\n\n![interactions](interactions.png)"),
    ]


def write_report(args: argparse.Namespace, r: IOIRun) -> Path:
    """``results.md``, the figures, the interactive circuit and the saved explanation."""
    title = "IOI toy model, ABC patching" if args.ablation == "patch" else "IOI toy model, zero ablation"
    plots.save(r.ex.plot_circuit(k=15, title=title), args.out / "circuit.png")
    plots.save(r.ex.circuit_html(k=15), args.out / "circuit.html")
    plots.save(r.ex.plot_heads(title=title), args.out / "interactions.png")
    r.ex.save(args.out / "explanation")
    return write_results(
        args.out, "Indirect-object identification: ProxySPEX vs exhaustive ablation", report_sections(args, r)
    )


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    clock = time.perf_counter()
    result = run(args)
    path = write_report(args, result)
    print(result.ex.summary())
    print(markdown_table(result.recovery))
    print(f"wrote {path} in {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
