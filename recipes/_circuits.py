"""Known-circuit checks shared by the toy-model recipes: the circuit by exhaustive ablation,
three ways to score components, and how well each score recovers the circuit.

With ``n`` small enough to evaluate all ``2^n`` masks, the truth is defined without reference
to any attribution method:

* the circuit's components: a kept-set is *sufficient* when it keeps at least ``quality`` of
  the way from the fully ablated value to the full model's; the circuit is the union of the
  smallest sufficient sets (all of minimum size: with two redundant heads, each smallest
  circuit holds one of them and both count);
* its interactions: the ``k`` pairs with the largest exact Banzhaf interaction
  ``|f(ab) - f(a) - f(b) + f(∅)|`` averaged over every context, read off the exact spectrum.

Methods score every component and every pair; the recovery table reports ROC AUC and
precision at the truth's size of those scores:

* ProxySPEX: Banzhaf value of each component, ``|Banzhaf interaction|`` of each pair, read off
  the spectrum fitted on ``m`` masks;
* single-component ablation (``n + 1`` calls): ``f(all) - f(all but i)``;
* attribution patching (one forward and one backward pass,
  :meth:`compattr.query.MaskedModel.mask_gradient`): the first-order estimate of the same.

Methods without interactions score a pair by the smaller magnitude of its two component
scores, the ranking a researcher would use to guess which components work together.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
from sklearn.metrics import roc_auc_score

import compattr

from _toy_transformer import walsh_hadamard

#: Share of the ablated-to-full gap a kept-set must recover to be sufficient.
QUALITY = 0.8
#: Number of strongest exact pairwise interactions that make the true interactions.
TOP_PAIRS = 5


@dataclass(frozen=True)
class Circuit:
    """The circuit of a function known on all masks.

    Attributes
    ----------
    smallest_sets : list of tuple of int
        The sufficient kept-sets of minimum size.
    components : (n,) bool array
        In some smallest sufficient set.
    pairs : set of (int, int)
        The strongest exact pairwise interactions (``a < b``).
    threshold : float
        The value a sufficient set reaches.
    quality : float
        Share of the ablated-to-full gap that ``threshold`` stands for.
    rising : bool
        Whether the value rises as components are kept (``f(all) >= f(none)``); where it
        falls (a loss), a component matters by how much it lowers the value.
    """

    smallest_sets: list[tuple[int, ...]]
    components: np.ndarray
    pairs: set[tuple[int, int]]
    threshold: float
    quality: float
    rising: bool = True


def exhaustive_circuit(values: np.ndarray, quality: float = QUALITY, top_pairs: int = TOP_PAIRS) -> Circuit:
    """The :class:`Circuit` of ``values``, the outputs of all ``2^n`` masks indexed by their
    bits (row 0 ablates everything, the last row keeps everything).

    Parameters
    ----------
    values : (2^n,) array
    quality : float in (0, 1]
        Share of ``f(all) - f(none)`` a sufficient set must recover.
    top_pairs : int
        How many of the strongest exact pairwise interactions are the true ones.
    """
    values = np.asarray(values, float)
    n = int(np.log2(len(values))) if len(values) else 0
    if n < 2 or len(values) != 2**n:
        raise ValueError(f"values must hold the outputs of all 2^n masks, n >= 2; got {len(values)}.")
    if not 0 < quality <= 1:
        raise ValueError(f"quality must lie in (0, 1], got {quality}.")
    threshold = values[0] + quality * (values[-1] - values[0])
    sufficient = np.flatnonzero(values >= threshold if values[-1] >= values[0] else values <= threshold)
    bits = (sufficient[:, None] >> np.arange(n)) & 1 == 1
    sizes = bits.sum(1)
    smallest = bits[sizes == sizes.min()]
    F = walsh_hadamard(values)
    pairs = list(combinations(range(n), 2))
    strength = np.abs([F[(1 << a) | (1 << b)] for a, b in pairs])
    strongest = np.argsort(-strength, kind="stable")[:top_pairs]
    return Circuit(
        smallest_sets=[tuple(int(i) for i in np.flatnonzero(row)) for row in smallest],
        components=smallest.any(0),
        pairs={pairs[i] for i in strongest},
        threshold=float(threshold),
        quality=quality,
        rising=bool(values[-1] >= values[0]),
    )


def single_ablation(f, n: int) -> np.ndarray:
    """``(n,)`` drop ``f(all) - f(all but i)`` of each component (``n + 1`` calls of ``f``)."""
    masks = ~np.eye(n + 1, n, k=-1, dtype=bool)
    values = np.asarray(f(masks), float)
    return values[0] - values[1:]


def spectrum_scores(sp: compattr.Spectrum) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Banzhaf value per component and ``|Banzhaf interaction|`` per pair of ``sp``."""
    interaction = compattr.indices.banzhaf_interaction(sp, max_order=2)
    pairs = {t: abs(interaction.get(t, 0.0)) for t in combinations(range(sp.n), 2)}
    return compattr.indices.banzhaf(sp), pairs


def pair_scores_from(components: np.ndarray) -> dict[tuple[int, int], float]:
    """Each pair scored by the smaller magnitude of its two component scores."""
    size = np.abs(components)
    return {(a, b): float(min(size[a], size[b])) for a, b in combinations(range(len(size)), 2)}


def _auc(truth: np.ndarray, scores: np.ndarray) -> float | str:
    return float(roc_auc_score(truth, scores)) if 0 < truth.sum() < len(truth) else "—"


def _precision_at(truth: np.ndarray, scores: np.ndarray) -> float:
    """The share of the ``k = truth.sum()`` highest ``scores`` that are true, ties at the cut
    counted at their expected share (not by index: scores of 0 for every pair would find the
    first pairs); where the cut is a score of 0 among scores that are never negative
    (magnitudes), the tied zeros are no picks."""
    k = int(truth.sum())
    if k == 0:
        return float("nan")
    cut = np.sort(scores)[::-1][k - 1]
    above, tied = scores > cut, scores == cut
    unranked = cut == 0 and scores.min() >= 0
    share = 0.0 if unranked else (k - above.sum()) / tied.sum()
    return float((truth[above].sum() + share * truth[tied].sum()) / k)


def recovery_row(
    method: str,
    calls: str,
    circuit: Circuit,
    components: np.ndarray,
    pairs: dict[tuple[int, int], float],
) -> dict:
    """One row of the recovery table: ROC AUC and precision at the truth's size (equal to
    the recall there), for the components and for the pairwise interactions. A ROC AUC is
    ``"—"`` when every candidate is in the truth (nothing to rank against). Component scores
    are signed effects on the value: where it falls as components are kept
    (``circuit.rising`` False), they are read with the opposite sign."""
    keys = sorted(pairs)
    pair_truth = np.array([k in circuit.pairs for k in keys])
    pair_scores = np.array([pairs[k] for k in keys])
    scores = np.asarray(components, float) * (1.0 if circuit.rising else -1.0)
    return {
        "method": method,
        "model calls": calls,
        "component ROC AUC": _auc(circuit.components, scores),
        f"component precision@{int(circuit.components.sum())}": _precision_at(circuit.components, scores),
        "interaction ROC AUC": _auc(pair_truth, pair_scores),
        f"interaction precision@{int(pair_truth.sum())}": _precision_at(pair_truth, pair_scores),
    }


def recovery_table(
    circuit: Circuit, ex: compattr.Explanation, ablation: np.ndarray, attribution: np.ndarray | None
) -> list[dict]:
    """Rows for ProxySPEX, single-component ablation and attribution patching
    (:func:`recovery_row`; no row for attribution patching when ``attribution`` is None, as
    for a value that is not differentiable)."""
    n = ex.n
    calls = len(np.unique(ex.masks, axis=0))  # the queries: a mask drawn twice is evaluated once
    rows = [
        recovery_row("ProxySPEX", str(calls), circuit, *spectrum_scores(ex.spectrum)),
        recovery_row("single-component ablation", str(n + 1), circuit, ablation, pair_scores_from(ablation)),
    ]
    if attribution is not None:
        calls = "1 forward + 1 backward"
        rows.append(recovery_row("attribution patching", calls, circuit, attribution, pair_scores_from(attribution)))
    return rows


def circuit_text(circuit: Circuit, names: list[str], limit: int = 12) -> str:
    """How the truth was defined, the smallest sufficient sets (at most ``limit``) and the
    true interactions, in markdown."""
    lines = [
        f"The truth by exhaustive ablation of all {2 ** len(names)} masks (recipes/_circuits.py): "
        f"the circuit is the union of the smallest kept-sets that recover {circuit.quality:.0%} of "
        "the way from all ablated to the full model; the true interactions are the "
        f"{len(circuit.pairs)} pairs with the largest exact Banzhaf interaction. "
        f"Sufficient: value ≥ {circuit.threshold:.3f}. Smallest sufficient sets "
        f"({len(circuit.smallest_sets)}, of {len(circuit.smallest_sets[0])} components):",
        "",
    ]
    lines += ["- " + ", ".join(names[i] for i in s) for s in circuit.smallest_sets[:limit]]
    if len(circuit.smallest_sets) > limit:
        lines.append(f"- ... and {len(circuit.smallest_sets) - limit} more")
    strongest = ", ".join(f"{names[a]} × {names[b]}" for a, b in sorted(circuit.pairs))
    lines += ["", f"Strongest exact interactions: {strongest}."]
    return "\n".join(lines) + "\n"
