"""Induction heads: ProxySPEX recovers a known circuit, checked against all 2^8 head masks.

A 2-layer attention-only transformer (vocab 64, d 64, 4 heads per layer, sequences of 32
tokens: random filler, a random segment of 4-16 tokens, then the segment again) learns to copy
the segment's continuation. It does so with a known circuit: *previous-token* heads in layer 0
write "the token before me was A" into each position, and *induction* heads in layer 1 attend
from a repeated ``A`` to the position after its first occurrence and copy that token. Several
layer-1 heads usually learn the same job, so they are redundant.

The value is the mean probability of the correct next token on the repeated half, over a
fixed batch of sequences (``--value logprob`` / ``accuracy`` for the alternatives); the
features are the 8 heads (zero-ablated through
:class:`compattr.AttentionHeads`, which hooks this hand-written model's ``o_proj``). With only
256 masks the exact spectrum is computed by brute force, so the recipe checks ProxySPEX
against the truth and against the circuit read off the attention patterns:

* cross-layer synergy: the strongest pairwise Möbius interaction pairs a previous-token head
  with an induction head (ablating either one breaks the circuit: AND-like);
* redundancy: ablating two layer-1 induction heads together costs more than the sum of
  ablating each alone (OR-like, super-additive).

Run::

    python recipes/induction_heads.py                       # seconds on one CPU thread
    python recipes/induction_heads.py --steps 3000 --sequences 256 --value logprob

The trained weights are cached in ``--out`` (a rerun skips training), and so are the queries.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

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
    lookup,
)


@dataclass(frozen=True)
class InductionConfig(ToyConfig):
    """The model's shape (:class:`ToyConfig`) and the task's: segments of 4-16 tokens."""

    min_segment: int = 4
    max_segment: int = 16


# --------------------------------------------------------------------------- task
def induction_batch(rng: np.random.Generator, size: int, config: InductionConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sequences ``[size, seq_len]``: filler, a segment of random length, its repeat.

    Returns
    -------
    tokens : (size, seq_len) int64 tensor
    lengths : (size,) int64 tensor
        Segment length of each sequence; the repeat occupies the last ``length`` positions.
    """
    S = config.seq_len
    tokens = rng.integers(0, config.vocab, (size, S))
    lengths = rng.integers(config.min_segment, config.max_segment + 1, size)
    for row, n in zip(tokens, lengths):
        row[S - n :] = row[S - 2 * n : S - n]
    return torch.from_numpy(tokens), torch.from_numpy(lengths)


def corrupted_twins(rng: np.random.Generator, tokens: torch.Tensor, lengths: torch.Tensor, vocab: int) -> torch.Tensor:
    """Each sequence with its repeat replaced by fresh random tokens: same filler and first
    segment, nothing left to copy. The paired corrupted input of patching ablation."""
    corrupted = tokens.clone()
    S = tokens.shape[1]
    for row, n in zip(corrupted, lengths.tolist()):
        row[S - n :] = torch.from_numpy(rng.integers(0, vocab, n))
    return corrupted


def scored_positions(lengths: torch.Tensor, seq_len: int) -> torch.Tensor:
    """``(B, seq_len - 1)`` 0/1 weights: position ``p`` is scored on predicting token ``p + 1``.

    Scored are the positions whose next token is the continuation of an earlier copy: from
    the first token of the repeat up to the second-to-last position.
    """
    p = torch.arange(seq_len - 1)
    return (p >= seq_len - lengths[:, None]).float()


#: Per-token scores a value can average (:func:`token_scores`).
SCORES = ("prob", "logprob", "accuracy")


def token_scores(model: torch.nn.Module, tokens: torch.Tensor, kind: str) -> torch.Tensor:
    """``(B, S - 1)`` score of each actual next token: its log-probability, probability, or
    whether it is the model's top prediction (``kind`` = ``"logprob"``, ``"prob"``, ``"accuracy"``)."""
    logits = model(tokens)[:, :-1]
    if kind == "accuracy":
        return (logits.argmax(-1) == tokens[:, 1:]).float()
    logp = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    return logp.exp() if kind == "prob" else logp


def mean_scored(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean of ``values`` over each row's scored positions."""
    return (values * weights).sum(-1) / weights.sum(-1)


class InductionValue(Value):
    """Mean score of the correct next token over each sequence's repeated half.

    Parameters
    ----------
    weights : (E, S - 1) tensor
        :func:`scored_positions` of the ``E`` sequences that are the inputs.
    kind : {"prob", "logprob", "accuracy"}
        Per-token score (:func:`token_scores`). The probability is the default: log-prob is
        unbounded below, so once the circuit is broken every further ablated head still makes
        the model more confidently wrong, which adds a large linear term on top of the
        circuit's AND/OR structure; the probability saturates near chance instead.
    """

    def __init__(self, weights: torch.Tensor, kind: str = "prob"):
        if kind not in SCORES:
            raise ValueError(f"kind must be one of {SCORES}, got {kind!r}.")
        self.weights = weights
        self.kind = kind

    def prepare(self, model, inputs, batch_size):
        return inputs, self.weights.to(inputs.device)

    def score(self, model, inputs, targets):
        return mean_scored(token_scores(model, inputs, self.kind), targets)

    def __repr__(self) -> str:
        return f"InductionValue(kind={self.kind!r}, weights#{digest(self.weights)})"


# --------------------------------------------------------------------------- training
def training_loss(config: InductionConfig, batch_size: int = 64):
    """``loss(model, rng)`` for :func:`_toy_transformer.train`: the repeated half's mean
    next-token negative log-likelihood on a fresh batch."""

    def loss(model: ToyTransformer, rng: np.random.Generator) -> torch.Tensor:
        tokens, lengths = induction_batch(rng, batch_size, config)
        weights = scored_positions(lengths, config.seq_len)
        return -mean_scored(token_scores(model, tokens, "logprob"), weights).mean()

    return loss


# --------------------------------------------------------------------------- the circuit
def head_roles(
    model: ToyTransformer, tokens: torch.Tensor, lengths: torch.Tensor, threshold: float = 0.3, mlps: bool = False
) -> pd.DataFrame:
    """Previous-token and induction scores of every head, read from its attention pattern.

    The previous-token score is the mean attention from position ``p`` to ``p - 1``; the
    induction score the mean attention from a scored position of the repeat to the position
    after the first occurrence of its token (``p - length + 1``). A head whose larger score
    reaches ``threshold`` gets that role, else ``"-"``.

    With ``mlps``, the model's MLP blocks follow the heads as rows with role ``"MLP"``.

    Returns
    -------
    DataFrame indexed by component name (``'L0.H2'``, ``'L1.MLP'``): ``prev_token``,
    ``induction``, ``role``.
    """
    with torch.no_grad():
        patterns = model.attention_patterns(tokens)  # [L, B, H, S, S]
    S = tokens.shape[1]
    p = torch.arange(1, S)
    prev = patterns[..., p, p - 1].mean((1, 3))
    weights = scored_positions(lengths, S)
    source = (torch.arange(S - 1) - lengths[:, None] + 1).clamp(min=0)  # (B, S-1)
    index = source[None, :, None, :, None].expand(*patterns.shape[:3], S - 1, 1)
    to_source = patterns[..., : S - 1, :].gather(-1, index).squeeze(-1)  # [L, B, H, S-1]
    induction = (to_source * weights[None, :, None]).sum((1, 3)) / weights.sum()
    rows = []
    for layer, head in np.ndindex(*prev.shape):
        a, b = float(prev[layer, head]), float(induction[layer, head])
        role = "previous-token" if a >= b else "induction"
        rows.append(
            {
                "head": f"L{layer}.H{head}",
                "prev_token": a,
                "induction": b,
                "role": role if max(a, b) >= threshold else "-",
            }
        )
    if mlps:
        rows += [{"head": f"L{layer}.MLP", "role": "MLP"} for layer in range(prev.shape[0])]
    return pd.DataFrame(rows).set_index("head")


def term_name(term: tuple[int, ...], names: list[str]) -> str:
    """``'L0.H1 × L1.H3'``."""
    return " × ".join(names[i] for i in term)


def pair_category(pair: tuple[int, ...], roles: pd.DataFrame, groups: np.ndarray) -> str:
    """``"previous-token × induction"``, ``"other cross-layer"`` or ``"within L<l>"``."""
    a, b = pair
    if groups[a] == groups[b]:
        return f"within L{groups[a]}"
    if sorted(roles["role"].iloc[[a, b]]) == ["induction", "previous-token"]:
        return "previous-token × induction"
    return "other cross-layer"


def pair_summary(moebius: dict[str, dict], roles: pd.DataFrame, groups: np.ndarray) -> list[dict]:
    """Mean pairwise Möbius interaction per :func:`pair_category`, for each named spectrum."""
    n = len(groups)
    pairs = list(combinations(range(n), 2))
    category = [pair_category(t, roles, groups) for t in pairs]
    rows = []
    for name in sorted(set(category)):
        chosen = [t for t, c in zip(pairs, category) if c == name]
        row = {"pairs": name, "count": len(chosen)}
        row.update(
            {
                f"mean Möbius ({source})": float(np.mean([m.get(t, 0.0) for t in chosen]))
                for source, m in moebius.items()
            }
        )
        rows.append(row)
    return rows


def pair_ablations(f, names: list[str], heads: list[int], n: int) -> list[dict]:
    """Pairwise ablations from the full model: ``Δ_ab - Δ_a - Δ_b`` for each pair of ``heads``.

    ``f(masks) -> values`` is the model (a :func:`lookup` table) or a spectrum's ``predict``.
    A positive excess is super-additive: removing both heads costs more than the two removals
    alone, as for redundant heads (OR-like). It equals ``-Σ_{T ⊇ {a, b}} I^M(T)``.
    """
    removals = [(h,) for h in heads] + list(combinations(heads, 2))
    masks = np.ones((1 + len(removals), n), bool)
    for row, removed in zip(masks[1:], removals):
        row[list(removed)] = False
    values = f(masks)
    drop = dict(zip(removals, values[0] - values[1:]))
    return [
        {
            "pair": term_name((a, b), names),
            "Δ_a": drop[(a,)],
            "Δ_b": drop[(b,)],
            "Δ_ab": drop[(a, b)],
            "excess": drop[(a, b)] - drop[(a,)] - drop[(b,)],
        }
        for a, b in combinations(heads, 2)
    ]


# --------------------------------------------------------------------------- verification
def top_terms(values: dict[tuple, float], k: int, order: int | None = None) -> list[tuple]:
    """The ``k`` non-empty sets (of ``order``, if given) with the largest ``|value|``."""
    sets = [t for t in values if len(t) and (order is None or len(t) == order)]
    return sorted(sets, key=lambda t: -abs(values[t]))[:k]


def comparison_table(estimated: dict[tuple, float], exact: dict[tuple, float], names: list[str], k: int) -> list[dict]:
    """The ``k`` strongest exact terms: exact value, ProxySPEX value and ProxySPEX rank."""
    rank = {t: i + 1 for i, t in enumerate(top_terms(estimated, len(estimated)))}
    return [
        {
            "term": term_name(t, names),
            "exact": exact[t],
            "ProxySPEX": estimated.get(t, 0.0),
            "ProxySPEX rank": rank.get(t, "-"),
        }
        for t in top_terms(exact, k)
    ]


@dataclass
class Verification:
    """ProxySPEX against the exact spectrum and against the circuit.

    Attributes
    ----------
    r2_all, r2_unseen : float
        R² of the ProxySPEX spectrum on all 2^n masks, and on the masks it was not fitted on
        (the held-out masks among them: they were queried, for the held-out R²).
    top_overlap : float
        Fraction of the 10 strongest exact Fourier terms among ProxySPEX's 10 strongest.
    top_pair, top_pair_exact : tuple of int
        The strongest pairwise Möbius interaction of ProxySPEX and of the exact spectrum.
    circuit_pair : bool
        ``top_pair`` joins a previous-token head (layer 0) and an induction head (layer 1).
    super_additive, super_additive_predicted : int
        Pairs of layer-1 induction heads whose ablation excess is positive, measured and as
        ProxySPEX predicts it; ``induction_pairs`` is the number of pairs.
    """

    r2_all: float
    r2_unseen: float
    top_overlap: float
    top_pair: tuple[int, ...]
    top_pair_exact: tuple[int, ...]
    circuit_pair: bool
    super_additive: int
    super_additive_predicted: int
    induction_pairs: int


def verify(ex: compattr.Explanation, values: np.ndarray, roles: pd.DataFrame) -> Verification:
    """Compare ``ex`` with the exact ``values`` on all masks and with the circuit ``roles``."""
    exact = exact_spectrum(values)
    r2_all, r2_unseen = faithfulness_on_every_mask(ex, values)
    top_pair = top_terms(compattr.indices.moebius(ex.spectrum), 1, order=2)[0]
    inductive = list(np.flatnonzero(roles["role"].to_numpy() == "induction"))

    def super_additive(f) -> int:
        return sum(row["excess"] > 0 for row in pair_ablations(f, ex.names, inductive, ex.n))

    return Verification(
        r2_all=r2_all,
        r2_unseen=r2_unseen,
        top_overlap=len(set(top_terms(ex.spectrum.to_dict(), 10)) & set(top_terms(exact.to_dict(), 10))) / 10,
        top_pair=top_pair,
        top_pair_exact=top_terms(compattr.indices.moebius(exact), 1, order=2)[0],
        circuit_pair=pair_category(top_pair, roles, ex.groups) == "previous-token × induction",
        super_additive=super_additive(lookup(values)),
        super_additive_predicted=super_additive(ex.spectrum.predict),
        induction_pairs=len(inductive) * (len(inductive) - 1) // 2,
    )


# --------------------------------------------------------------------------- run
@dataclass
class InductionRun:
    """What :func:`run` computed: the explanation, the brute-force truth, the checks."""

    ex: compattr.Explanation
    values: np.ndarray
    roles: pd.DataFrame
    check: Verification
    circuit: Circuit
    recovery: list[dict]
    train_seconds: float | None
    explain_seconds: float


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__, "results/induction_heads")
    add_training_arguments(p, steps=600)
    p.add_argument("--sequences", type=int, default=64, help="sequences the value averages over (default %(default)s)")
    p.add_argument(
        "--value", choices=SCORES, default="prob", help="per-token score averaged over the repeat (default %(default)s)"
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=8.0,
        help=(
            "budget m = ceil(alpha n log2 n); n = 8 heads: alpha 8 = 192 masks, about 130 of them "
            "distinct, each queried once (default %(default)s)"
        ),
    )
    p.add_argument(
        "--rescale", action="store_true", help="scale kept heads by H/k (default: zero ablation, as the paper)"
    )
    p.add_argument("--top", type=int, default=10, help="rows of the interaction tables (default %(default)s)")
    p.add_argument(
        "--mlp", action="store_true", help="train a model with MLP blocks and explain its heads and MLPs together"
    )
    p.add_argument(
        "--ablation",
        choices=("zero", "patch"),
        default="zero",
        help="a masked component outputs zero, or its output on a corrupted twin whose repeat is "
        "random (default %(default)s)",
    )
    return p


def components(model: ToyTransformer, args: argparse.Namespace, corrupted: torch.Tensor):
    """The heads (and with ``--mlp`` the MLP blocks) under ``--ablation``."""
    patch = {"ablation": "patch", "corrupted": corrupted} if args.ablation == "patch" else {}
    heads = compattr.AttentionHeads(model, rescale=args.rescale, **patch)
    return heads + compattr.MLPBlocks(model, **patch) if args.mlp else heads


def run(args: argparse.Namespace) -> InductionRun:
    """Train (or load) the model, explain its heads (and MLPs), evaluate all 2^n masks, verify,
    and score the recovery of the circuit against single-component ablation and attribution
    patching."""
    out = setup(args)
    if args.rescale and args.ablation == "patch":
        raise SystemExit("--rescale applies to zero ablation only.")
    config = InductionConfig(mlp=args.mlp)
    model, train_seconds = load_or_train(
        out, "induction", config, training_loss(config), args.steps, args.lr, args.seed
    )
    rng = np.random.default_rng([args.seed, 1])
    tokens, lengths = induction_batch(rng, args.sequences, config)
    heads = components(model, args, corrupted_twins(rng, tokens, lengths, config.vocab))
    value = InductionValue(scored_positions(lengths, config.seq_len), args.value)
    clock = time.perf_counter()
    ex = compattr.explain(  # the model is read from the heads
        features=heads,
        value=value,
        inputs=tokens,
        alpha=args.alpha,
        seed=args.seed,
        cache_dir=out / "queries",
        batch_size=16 * args.sequences,
        progress=False,
    )
    explain_seconds = time.perf_counter() - clock
    query = compattr.MaskedModel(model, heads, value, tokens, batch_size=16 * args.sequences)
    values = query.evaluate(all_masks(heads.n))
    roles = head_roles(model, tokens, lengths, mlps=args.mlp)
    circuit = exhaustive_circuit(values)
    recovery = recovery_table(
        circuit,
        ex,
        single_ablation(lookup(values), heads.n),
        None if args.value == "accuracy" else query.mask_gradient(),
    )
    check = verify(ex, values, roles)
    return InductionRun(ex, values, roles, check, circuit, recovery, train_seconds, explain_seconds)


# --------------------------------------------------------------------------- report
FIGURES = """![exact vs ProxySPEX](exact_vs_proxyspex.png)

![pairwise Banzhaf interactions](head_interactions.png)

![energy split](energy.png)"""


def comparison_figure(ex: compattr.Explanation, values: np.ndarray) -> Figure:
    """Pairwise Möbius maps, exact and ProxySPEX, and predicted vs true value on every mask."""
    masks = all_masks(ex.n)
    fig = Figure(figsize=(17, 5), layout="constrained")
    axes = fig.subplots(1, 3)
    for ax, sp, label in [
        (axes[0], exact_spectrum(values), f"exact ({len(masks)} masks)"),
        (axes[1], ex.spectrum, f"ProxySPEX ({len(ex.masks)} queries)"),
    ]:
        plots.head_interactions(sp, ex.names, ex.groups, index="moebius", ax=ax)
        ax.set_title(f"{label}\n{ax.get_title().splitlines()[-1]}", fontsize=10)
    for name, sp, marker in [("ProxySPEX", ex.spectrum, "o"), ("LASSO", ex.lasso, "x")]:
        legend = f"{name} (R² {compattr.faithfulness(sp, masks, values):.3f})"
        axes[2].scatter(values, sp.predict(masks), s=12, marker=marker, label=legend)
    axes[2].axline((values[0], values[0]), slope=1, color="k", lw=0.8)
    axes[2].set_xlabel("true value")
    axes[2].set_ylabel("predicted")
    axes[2].set_title(f"all {len(masks)} head masks", fontsize=10)
    axes[2].legend(frameon=False)
    return fig


def report_sections(args: argparse.Namespace, r: InductionRun) -> list[tuple[str, str]]:
    """The (heading, markdown) sections of ``results.md``."""
    ex, values, check = r.ex, r.values, r.check
    exact = exact_spectrum(values)
    masks = all_masks(ex.n)
    names = ex.names
    trained = "weights loaded from cache" if r.train_seconds is None else f"trained in {r.train_seconds:.0f} s"
    moebius = {"exact": compattr.indices.moebius(exact), "ProxySPEX": compattr.indices.moebius(ex.spectrum)}
    roles = r.roles.assign(banzhaf_exact=compattr.indices.banzhaf(exact), banzhaf=compattr.indices.banzhaf(ex.spectrum))
    layer1 = list(np.flatnonzero(ex.groups == 1))
    vocab = InductionConfig().vocab
    chance = -math.log(vocab) if args.value == "logprob" else 1 / vocab
    every = f"R² all {len(masks)} masks"
    fit = [
        {
            "method": "ProxySPEX",
            "held-out R²": ex.faithfulness,
            every: check.r2_all,
            "R² masks not fitted on": check.r2_unseen,
            "terms": len(ex.spectrum),
        },
        {
            "method": "LASSO",
            "held-out R²": ex.lasso_faithfulness,
            every: compattr.faithfulness(ex.lasso, masks, values),
            "terms": len(ex.lasso),
        },
    ]
    energy = [
        {"spectrum": name, "linear": e.linear, "within-layer": e.within, "cross-layer": e.cross}
        for name, e in [("exact", exact.energy(ex.groups)), ("ProxySPEX", ex.energy())]
    ]
    checks = [
        (f"ProxySPEX {every}", f"{check.r2_all:.3f}"),
        ("top-10 Fourier terms shared with the exact top-10", f"{check.top_overlap:.0%}"),
        (
            "strongest pairwise Möbius: ProxySPEX / exact",
            f"{term_name(check.top_pair, names)} / {term_name(check.top_pair_exact, names)}",
        ),
        ("ProxySPEX's strongest pair joins a previous-token and an induction head", str(check.circuit_pair)),
        (
            "super-additive induction-head pairs: measured / ProxySPEX",
            f"{check.super_additive} / {check.super_additive_predicted} of {check.induction_pairs}",
        ),
    ]
    kind = "attention + MLP" if args.mlp else "attention-only"
    features = "Heads and MLP blocks" if args.mlp else "Heads"
    ablated = (
        f"{features} patched from a corrupted twin of each sequence (its repeat replaced by random tokens)."
        if args.ablation == "patch"
        else f"{features} zero-ablated (rescale={args.rescale})."
    )
    return [
        (
            "Setup",
            (
                f"2-layer {kind} transformer, {args.steps} training steps ({trained}). Value: mean "
                f"{args.value} of the correct next token over the repeated half of {args.sequences} fixed "
                f"sequences: {values[-1]:.3f} with all components, {values[0]:.3f} with none (uniform guess "
                f"{chance:.3f}). {ablated} ProxySPEX fitted on {len(ex.masks)} queries (alpha={args.alpha}); "
                f"compattr.explain took {r.explain_seconds:.1f} s.\n"
            ),
        ),
        ("Checks", markdown_table([{"check": c, "result": v} for c, v in checks])),
        (
            "Circuit recovery",
            circuit_text(r.circuit, names) + "\n" + markdown_table(r.recovery),
        ),
        (
            "Head roles from attention patterns, and Banzhaf values",
            markdown_table(roles.reset_index().to_dict("records")),
        ),
        (
            "Faithfulness",
            markdown_table(fit)
            + (
                f"\n\nWith n = {ex.n} there are only {len(masks)} masks; explain holds out the "
                f"{len(ex.test_masks)} it did not fit on, and the last column checks every mask "
                "it was not fitted on (here those held-out masks).\n"
            ),
        ),
        (
            "Mean pairwise Möbius interaction by kind of pair",
            markdown_table(pair_summary(moebius, r.roles, ex.groups))
            + "\n\nMöbius I(T) is the effect of keeping T on top of its subsets, starting from no heads: "
            "positive = synergy (AND-like).\n",
        ),
        (
            "Strongest Möbius interactions: exact vs ProxySPEX",
            markdown_table(comparison_table(moebius["ProxySPEX"], moebius["exact"], names, args.top)),
        ),
        (
            "Strongest Fourier terms: exact vs ProxySPEX",
            markdown_table(comparison_table(ex.spectrum.to_dict(), exact.to_dict(), names, args.top)),
        ),
        (
            "Layer-1 pair ablations from the full model, measured",
            markdown_table(pair_ablations(lookup(values), names, layer1, ex.n))
            + "\n\nexcess = Δ_ab − Δ_a − Δ_b > 0: super-additive, the heads back each other up (OR-like).\n",
        ),
        (
            "Layer-1 pair ablations, as ProxySPEX predicts them",
            markdown_table(pair_ablations(ex.spectrum.predict, names, layer1, ex.n)),
        ),
        ("Energy split", markdown_table(energy)),
        ("compattr summary", f"```\n{ex.summary()}\n```"),
        ("Figures", FIGURES),
    ]


def write_report(args: argparse.Namespace, r: InductionRun) -> Path:
    """``results.md``, the figures and the saved explanation, in ``args.out``."""
    plots.save(comparison_figure(r.ex, r.values), args.out / "exact_vs_proxyspex.png")
    plots.save(r.ex.plot_heads(), args.out / "head_interactions.png")
    plots.save(r.ex.plot_energy(), args.out / "energy.png")
    r.ex.save(args.out / "explanation")
    return write_results(args.out, "Induction heads: ProxySPEX vs the exact head spectrum", report_sections(args, r))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    clock = time.perf_counter()
    result = run(args)
    path = write_report(args, result)
    print(result.ex.summary())
    print(
        f"R² on all {len(result.values)} masks {result.check.r2_all:.3f}, circuit pair {result.check.circuit_pair}; "
        f"wrote {path} in {time.perf_counter() - clock:.0f} s"
    )


if __name__ == "__main__":
    main()
