"""Data attribution: which pairs of training digits work together (or duplicate each other).

Paper §5.1 / appendix C.1 at CPU scale. The features are ``n`` training examples of sklearn's
``load_digits()``; ``f(S)`` is the margin on a held-out test digit (its true-class logit minus
the highest other logit) of a model retrained on the kept subset ``S``. Each query retrains a
model on a random 50 % subset (logistic regression, or a small CNN); one
retrain gives the margins of every test digit at once, and the query cache in ``--out`` makes
reruns skip every retrain (only the ProxySPEX fits run again).

Per test digit: ProxySPEX's held-out faithfulness against LASSO (the linear datamodel of Ilyas
et al.), with the paired bootstrap interval of their difference, then the Fourier spectrum
converted to Möbius interactions, split as in C.1 into *target-class* pairs (both training
images share the test digit's label) and *non-target-class* pairs (at least one does not):

* synergistic: the target-class pair with the largest Möbius value, and the non-target pair
  with the most negative one (together they push the margin further than apart);
* redundant: the target-class pair with the most negative Möbius value (similar images whose
  help overlaps), and the non-target pair with the largest one.

The paper's rule picks, of each two, the one of larger magnitude (framed in the image grids).

Run::

    python recipes/data_attribution.py                          # n=300, alpha 1
    python recipes/data_attribution.py --n 1437 --alpha 0.38 --targets 10   # all train digits
    python recipes/data_attribution.py --model cnn --n 100 --test-masks 200  # CNN retrains

Budget: ``m = ceil(alpha n log2 n)`` retrains plus ``--test-masks`` held-out ones. The paper
had ``alpha ≈ 0.38`` at ``n = 50,000`` (300,000 retrained ResNets); the default ``alpha = 1``
at ``n = 300`` is 2,469 retrains + 500 held out (+ up to 160 per test digit for the pair
checks) of logistic regression on one thread (alpha 0.5 halves them and costs ~0.03-0.04 of R²); docs/results.md
has the times.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from threadpoolctl import threadpool_limits
from torch import nn

import compattr
from compattr.apps import plots
from compattr.apps.arguments import held_out_count
from compattr.apps.report import interval_text, markdown_table
from compattr.features.base import digest
from compattr.query.values import margin

from _common import parser, setup, write_results

CLASSES = 10
TEST_SIZE = 360  # load_digits(): 1,797 images -> 1,437 train / 360 test


# --------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Digits:
    """The first ``n`` training digits and the chosen test digits, pixels scaled to [0, 1].

    Attributes
    ----------
    train_x, test_x : (n, 64), (T, 64) float arrays
    train_y, test_y : (n,), (T,) int arrays
    test_ids : (T,) int array
        Positions of the test digits in the 360-image test split.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    test_ids: np.ndarray


def load_data(n: int, targets: int, seed: int = 0) -> Digits:
    """A stratified 1,437 / 360 split of ``load_digits()``; ``n`` train and ``targets`` test digits.

    The test digits are drawn at random (seeded), from distinct classes while there are any.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    train_x, test_x, train_y, test_y = train_test_split(x / 16.0, y, test_size=TEST_SIZE, stratify=y, random_state=seed)
    if not 2 <= n <= len(train_x):
        raise ValueError(f"n must be in [2, {len(train_x)}], got {n}.")
    order = np.random.default_rng(seed).permutation(TEST_SIZE)
    _, first = np.unique(test_y[order], return_index=True)  # one test digit per class first
    picks = np.concatenate([order[np.sort(first)], np.setdiff1d(order, order[first], assume_unique=True)])
    ids = np.sort(picks[:targets])
    return Digits(train_x[:n], train_y[:n], test_x[ids], test_y[ids], ids)


# --------------------------------------------------------------------------- learners
class Learner(Protocol):
    """Trains on a subset of the training set and returns the logits of the test digits."""

    def fit_logits(self, data: Digits, keep: np.ndarray) -> np.ndarray:
        """``(T, 10)`` test logits of a model trained on ``data.train_*[keep]``."""

    def __repr__(self) -> str:
        """Identifies the training procedure (part of the query cache key)."""


@dataclass(frozen=True)
class Logistic:
    """L2-regularised multinomial logistic regression (lbfgs, deterministic).

    Dropped examples get sample weight 0 rather than being removed, so all 10 classes exist
    even when a subset lacks one. The intercept is a constant input column, penalised like the
    weights: an unpenalised intercept of a class absent from the subset diverges to -inf.
    """

    C: float = 1.0

    def fit_logits(self, data: Digits, keep: np.ndarray) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        missing = sorted(set(range(10)) - set(data.train_y.tolist()))
        if missing:  # the model would have no column for them: margins would read other classes
            raise ValueError(
                f"the {len(data.train_y)} training digits hold no {missing}; raise --n (or change --seed)."
            )
        model = LogisticRegression(C=self.C, fit_intercept=False, max_iter=5000, tol=1e-8)
        model.fit(_with_bias(data.train_x), data.train_y, sample_weight=keep.astype(np.float64))
        return model.decision_function(_with_bias(data.test_x))


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


class SmallCNN(nn.Module):
    """Two 3x3 conv layers with max-pooling (8x8 -> 4x4 -> 2x2), then a linear classifier."""

    def __init__(self, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(8 * width, CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.view(-1, 1, 8, 8))


@dataclass(frozen=True)
class CNN:
    """:class:`SmallCNN` trained full-batch with Adam; the same seed for every retrain, so
    ``f(S)`` depends on the subset only."""

    epochs: int = 150
    lr: float = 1e-2
    seed: int = 0

    def fit_logits(self, data: Digits, keep: np.ndarray) -> np.ndarray:
        torch.manual_seed(self.seed)
        model = SmallCNN()
        opt = torch.optim.Adam(model.parameters(), lr=self.lr)
        x = torch.as_tensor(data.train_x[keep], dtype=torch.float32)
        y = torch.as_tensor(data.train_y[keep])
        for _ in range(self.epochs):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return model(torch.as_tensor(data.test_x, dtype=torch.float32)).numpy()


# --------------------------------------------------------------------------- value function
class SubsetMargins:
    """Retrain on a subset once and read the margin of every test digit; memoised per subset.

    Each test digit is its own :class:`compattr.TrainingSubsets` (:meth:`features`); as
    ``compattr.explain`` draws the same masks for all of them (same seed), only the first
    retrains and the others read the memo.
    """

    def __init__(self, data: Digits, learner: Learner, threads: int = 1):
        self.data = data
        self.learner = learner
        self.threads = threads
        self._memo: dict[bytes, np.ndarray] = {}

    def __call__(self, keep: np.ndarray) -> np.ndarray:
        """``(T,)`` margins of the model trained on ``keep``."""
        key = np.packbits(keep).tobytes()
        if key not in self._memo:
            with threadpool_limits(self.threads):  # BLAS oversubscription was 20-40x slower
                logits = self.learner.fit_logits(self.data, keep)
            self._memo[key] = margin(torch.as_tensor(logits), torch.as_tensor(self.data.test_y)).numpy()
        return self._memo[key]

    def features(self, target: int) -> compattr.TrainingSubsets:
        """The training examples as features of test digit number ``target``."""
        d = self.data
        return compattr.TrainingSubsets(
            len(d.train_y),
            lambda keep: float(self(keep)[target]),
            names=[f"#{i}({label})" for i, label in enumerate(d.train_y)],
            groups=d.train_y,
            key=f"digits {self.learner!r} data#{digest(d.train_x, d.train_y, d.test_x[target])}",
        )


# --------------------------------------------------------------------------- interactions
@dataclass(frozen=True)
class Pair:
    """One pairwise Möbius interaction between two training examples."""

    kind: str  # "synergy" or "redundancy"
    target_class: bool  # both training examples share the test digit's label
    members: tuple[int, int]
    value: float


def top_pairs(sp: compattr.Spectrum, train_y: np.ndarray, label: int) -> list[Pair]:
    """The (up to) four pairs of appendix C.1, from the spectrum's Möbius interactions.

    Target-class pairs (both examples of class ``label``) raise the margin when kept, so
    their synergy is the largest positive Möbius value and their redundancy the most negative;
    pairs with a non-target example act the other way round. Unlike the paper's bare
    argmax/argmin, a pick whose sign contradicts its kind (a "synergy" that is redundant
    because every pair is) is left out.
    """
    moebius = compattr.indices.moebius(sp, max_order=2)
    found = []
    for target_class, sign in ((True, 1.0), (False, -1.0)):
        chosen = [
            (t, sign * v)
            for t, v in moebius.items()
            if len(t) == 2 and (train_y[list(t)] == label).all() == target_class
        ]
        if not chosen:
            continue
        high, low = max(chosen, key=lambda tv: tv[1]), min(chosen, key=lambda tv: tv[1])
        if high[1] > 0:
            found.append(Pair("synergy", target_class, high[0], sign * high[1]))
        if low[1] < 0:
            found.append(Pair("redundancy", target_class, low[0], sign * low[1]))
    return found


def strongest(pairs: list[Pair], kind: str) -> Pair | None:
    """The paper's ``R*``: of the target and non-target pair of ``kind``, the larger ``|value|``."""
    chosen = [p for p in pairs if p.kind == kind]
    return max(chosen, key=lambda p: abs(p.value)) if chosen else None


@dataclass(frozen=True)
class PairCheck:
    """A pair's interaction measured by retraining, against the spectrum's prediction.

    Both are the mean over the same random 50 % contexts ``C`` of the second difference
    ``f(C+a+b) - f(C+a) - f(C+b) + f(C)`` (the pair's Banzhaf interaction, estimated).
    """

    pair: Pair
    predicted: float
    measured: float
    stderr: float


def second_differences(f, pair: tuple[int, int], contexts: np.ndarray) -> np.ndarray:
    """``f(C+a+b) - f(C+a) - f(C+b) + f(C)`` for each context row ``C`` (its bits a, b ignored)."""
    masks = np.repeat(contexts, 4, axis=0)
    masks[:, list(pair)] = np.tile([[True, True], [True, False], [False, True], [False, False]], (len(contexts), 1))
    return f(masks).reshape(-1, 4) @ np.array([1.0, -1.0, -1.0, 1.0])


def check_pair(pair: Pair, sp: compattr.Spectrum, f, contexts: np.ndarray) -> PairCheck:
    """Measure ``pair``'s interaction by retraining (``f``) and predict it from ``sp``."""
    measured = second_differences(f, pair.members, contexts)
    predicted = second_differences(sp.predict, pair.members, contexts)
    return PairCheck(
        pair, float(predicted.mean()), float(measured.mean()), float(measured.std(ddof=1) / np.sqrt(len(measured)))
    )


# --------------------------------------------------------------------------- run
@dataclass
class TargetResult:
    """One test digit's explanation, its C.1 pairs and the retraining check of the strongest."""

    test_id: int
    label: int
    ex: compattr.Explanation
    pairs: list[Pair]
    checks: list[PairCheck]


def build_parser() -> argparse.ArgumentParser:
    p = parser(__doc__, "results/data_attribution")
    p.add_argument("--n", type=int, default=300, help="training examples = features (default %(default)s; all: 1437)")
    p.add_argument("--targets", type=int, default=4, help="held-out test digits to explain (default %(default)s)")
    p.add_argument("--model", choices=("logistic", "cnn"), default="logistic", help="model retrained per query")
    p.add_argument(
        "--alpha",
        type=float,
        default=1.0,
        help="retrains m = ceil(alpha n log2 n) (default %(default)s; the paper: 0.38 at n=50,000)",
    )
    p.add_argument(
        "--test-masks",
        type=held_out_count,
        default=500,
        help="held-out retrains for the R² (default %(default)s; paper 1000)",
    )
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression")
    p.add_argument("--epochs", type=int, default=150, help="full-batch Adam steps of the CNN")
    p.add_argument(
        "--check-contexts",
        type=int,
        default=20,
        help="random contexts (4 retrains each) measuring each strongest pair (default %(default)s; 0: skip)",
    )
    return p


def make_learner(args: argparse.Namespace) -> Learner:
    """The learner named by ``--model`` with its options."""
    if args.model == "cnn":
        return CNN(epochs=args.epochs, seed=args.seed)
    return Logistic(C=args.C)


def run(args: argparse.Namespace) -> tuple[Digits, list[TargetResult]]:
    """Explain the margin of each test digit by the training examples."""
    out = setup(args)
    data = load_data(args.n, args.targets, args.seed)
    margins = SubsetMargins(data, make_learner(args), args.threads)
    if args.check_contexts == 1:
        raise ValueError("--check-contexts must be 0 (no check) or at least 2 (for a standard error).")
    contexts = None
    if args.check_contexts:
        contexts = compattr.sample_masks(args.n, args.check_contexts, seed=args.seed + 1)
    results = []
    for j, (test_id, label) in enumerate(zip(data.test_ids, data.test_y)):
        features = margins.features(j)
        cache = out / "queries"  # a root: one folder per test digit, keyed by its fingerprint
        ex = compattr.explain(
            features=features, alpha=args.alpha, seed=args.seed, test_masks=args.test_masks, cache_dir=cache
        )
        pairs = top_pairs(ex.spectrum, data.train_y, label)
        retrain = partial(compattr.run_queries, features, cache_dir=cache, progress=False)
        picked = [strongest(pairs, kind) for kind in ("synergy", "redundancy")]
        checks = [] if contexts is None else [check_pair(p, ex.spectrum, retrain, contexts) for p in picked if p]
        results.append(TargetResult(int(test_id), int(label), ex, pairs, checks))
    return data, results


# --------------------------------------------------------------------------- report
def _show(ax, pixels: np.ndarray, title: str, frame: str | None = None) -> None:
    ax.imshow(pixels.reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)
    if frame is not None:
        ax.add_patch(Rectangle((-0.5, -0.5), 8, 8, fill=False, edgecolor=frame, lw=4))


def pair_grid(results: list[TargetResult], data: Digits, kind: str) -> Figure:
    """Rows: test digit | its target-class pair | its non-target-class pair of ``kind``.

    Each pair's Möbius interaction heads it; the pair the paper's rule picks (larger
    ``|Möbius|``) is framed (green: synergy, red: redundancy).
    """
    colour = {"synergy": "tab:green", "redundancy": "tab:red"}[kind]
    fig = Figure(figsize=(7, 1.7 * len(results) + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(results), 5))
    for row, r, x in zip(axes, results, data.test_x):
        _show(row[0], x, f"\ntest #{r.test_id}: {r.label}")
        best = strongest(r.pairs, kind)
        for target_class, cells in ((True, row[1:3]), (False, row[3:5])):
            where = "target" if target_class else "non-target"
            pair = next((p for p in r.pairs if p.kind == kind and p.target_class == target_class), None)
            if pair is None:
                for ax in cells:
                    ax.axis("off")
                cells[0].set_title(f"no {where} pair", fontsize=8)
                continue
            heading = [f"{where}: I = {pair.value:+.3f}", ""]
            for ax, i, head in zip(cells, pair.members, heading):
                _show(ax, data.train_x[i], f"{head}\n#{i}: {data.train_y[i]}", colour if pair is best else None)
    fig.suptitle(f"Top {kind} pairs of training digits (Möbius, order 2)", fontsize=10)
    return fig


def summary_rows(results: list[TargetResult], names: list[str]) -> list[dict]:
    """One row per test digit: faithfulness, spectrum size, energy split, the paper's pairs."""
    rows = []
    for r in results:
        e = r.ex.energy()
        pick = {kind: strongest(r.pairs, kind) for kind in ("synergy", "redundancy")}
        rows.append(
            {
                "test digit": _digit(r),
                "ProxySPEX R²": r.ex.faithfulness,
                "LASSO R²": r.ex.lasso_faithfulness,
                "R² difference [95 %]": interval_text(r.ex.faithfulness_interval(against_lasso=True), signed=True),
                "terms": len(r.ex.spectrum),
                "order ≥ 2 energy": e.within + e.cross,
                "within-class": e.within,
                **{
                    f"top {kind}": "-" if p is None else f"{_pair_name(p, names)} ({p.value:+.3f})"
                    for kind, p in pick.items()
                },
            }
        )
    return rows


def pair_rows(results: list[TargetResult], names: list[str]) -> list[dict]:
    """All four C.1 pairs of every test digit."""
    return [
        {
            "test digit": _digit(r),
            "kind": p.kind,
            "pair class": "target" if p.target_class else "non-target",
            "pair": _pair_name(p, names),
            "Möbius": p.value,
        }
        for r in results
        for p in r.pairs
    ]


def check_rows(results: list[TargetResult], names: list[str]) -> list[dict]:
    """The strongest pairs' interactions: predicted by the spectrum and measured by retraining."""
    return [
        {
            "test digit": _digit(r),
            "kind": c.pair.kind,
            "pair": _pair_name(c.pair, names),
            "Möbius": c.pair.value,
            "predicted": c.predicted,
            "measured": c.measured,
            "± s.e.": c.stderr,
        }
        for r in results
        for c in r.checks
    ]


def _digit(r: TargetResult) -> str:
    return f"#{r.test_id} ({r.label})"


def _pair_name(p: Pair, names: list[str]) -> str:
    return " × ".join(names[i] for i in p.members)


def write_report(args: argparse.Namespace, data: Digits, results: list[TargetResult], seconds: float) -> Path:
    """``results.md`` and the synergy / redundancy image grids, in ``args.out``."""
    names = results[0].ex.names
    for kind in ("synergy", "redundancy"):
        plots.save(pair_grid(results, data, kind), args.out / f"{kind}.png")
    m = len(results[0].ex.masks)
    sections = [
        (
            "Setup",
            (
                f"{args.model} retrained on random 50 % subsets of n = {args.n} training digits "
                f"({m} fitting + {args.test_masks} held-out retrains, alpha = {args.alpha}); value = "
                f"margin of each test digit. Wall time {seconds:.0f} s.\n"
            ),
        ),
        (
            "Per test digit",
            markdown_table(summary_rows(results, names))
            + (
                "\n\nR² on held-out retrains. Groups are the training labels, so 'within-class' is "
                "the energy of interactions among training digits of one class.\n"
            ),
        ),
        ("Appendix C.1 pairs (Möbius, order 2)", markdown_table(pair_rows(results, names))),
        (
            "Do the strongest pairs interact when retrained?",
            markdown_table(check_rows(results, names))
            + (
                f"\n\nMean second difference f(C+a+b) − f(C+a) − f(C+b) + f(C) over {args.check_contexts} random "
                "50 % contexts C (the pair's Banzhaf interaction): predicted by the ProxySPEX spectrum, and "
                "measured by retraining on the same contexts. The Möbius value is the same pair's "
                "interaction extrapolated to the empty training set, which no 50 % mask observes.\n"
            ),
        ),
        ("Figures", "![synergy](synergy.png)\n\n![redundancy](redundancy.png)"),
    ]
    return write_results(args.out, "Data attribution on digits: interactions between training examples", sections)


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    clock = time.perf_counter()
    data, results = run(args)
    path = write_report(args, data, results, time.perf_counter() - clock)
    for r in results:
        print(
            f"test #{r.test_id} ({r.label}): ProxySPEX R² {r.ex.faithfulness:.3f}, LASSO {r.ex.lasso_faithfulness:.3f}"
        )
    print(f"wrote {path} in {time.perf_counter() - clock:.0f} s")


if __name__ == "__main__":
    main()
