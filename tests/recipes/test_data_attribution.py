"""recipes/data_attribution.py: retrained digit classifiers as a value function, the appendix C.1
pair selection, and a tiny end-to-end run (n = 40 training digits) checked against retraining."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import data_attribution as da

import compattr

torch.set_num_threads(1)


pytestmark = pytest.mark.slow  # runs a whole recipe script


def _margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """True-class logit minus the highest other logit, by hand."""
    rows = np.arange(len(labels))
    others = logits.copy()
    others[rows, labels] = -np.inf
    return logits[rows, labels] - others.max(1)


# ----------------------------------------------------------------------------- pieces
def test_load_data_splits_digits_and_picks_test_digits_of_distinct_classes():
    data = da.load_data(40, 4, seed=0)
    assert data.train_x.shape == (40, 64) and data.test_x.shape == (4, 64)
    assert data.train_x.max() <= 1.0 and len(set(data.test_y.tolist())) == 4
    assert len(da.load_data(1437, 12, seed=0).test_y) == 12
    with pytest.raises(ValueError, match="n must be"):
        da.load_data(1438, 1)
    # with a class absent, the logistic model's columns are the classes present: a margin
    # would read another class's score (--n 20, seed 2 lacks a 3)
    lacking = da.load_data(20, 4, seed=2)
    with pytest.raises(ValueError, match=r"the 20 training digits hold no \[3\]"):
        da.Logistic().fit_logits(lacking, np.ones(20, bool))


def test_logistic_keeps_all_classes_when_the_subset_lacks_the_test_class():
    data = da.load_data(40, 3, seed=0)
    keep = data.train_y != data.test_y[0]
    with threadpool_limits(1):
        logits = da.Logistic().fit_logits(data, keep)
    assert logits.shape == (3, 10) and np.isfinite(logits).all()
    assert _margins(logits, data.test_y)[0] < 0  # never saw the class: cannot be right


def test_cnn_retrains_deterministically():
    data = da.load_data(30, 2, seed=0)
    keep = np.random.default_rng(0).random(30) < 0.5
    cnn = da.CNN(epochs=5)
    first = cnn.fit_logits(data, keep)
    assert first.shape == (2, 10)
    np.testing.assert_array_equal(first, cnn.fit_logits(data, keep))


def test_top_pairs_follow_appendix_c1_and_drop_contradicting_signs():
    # f = x0 x1 - x2 x3 + 0.5 x0 x2: Möbius {0,1} = +1, {2,3} = -1, {0,2} = +0.5
    def and_(i, j, c):
        return {(): c / 4, (i,): -c / 4, (j,): -c / 4, (i, j): c / 4}

    terms = {}
    for part in (and_(0, 1, 1.0), and_(2, 3, -1.0), and_(0, 2, 0.5)):
        for t, v in part.items():
            terms[t] = terms.get(t, 0.0) + v
    sp = compattr.Spectrum.from_dict(terms, 4)
    labels = np.array([3, 3, 5, 5])  # test label 3: (0, 1) is target-class, the others are not
    pairs = {(p.kind, p.target_class): p for p in da.top_pairs(sp, labels, 3)}
    assert pairs[("synergy", True)].members == (0, 1)
    assert pairs[("synergy", True)].value == pytest.approx(1.0)
    assert pairs[("synergy", False)].members == (2, 3)  # non-target: most negative
    assert pairs[("redundancy", False)].members == (0, 2)  # non-target: most positive
    assert ("redundancy", True) not in pairs  # the only target pair is synergistic
    assert da.strongest(list(pairs.values()), "synergy").members in {(0, 1), (2, 3)}


def test_second_differences_of_an_and_and_an_or():
    contexts = np.random.default_rng(0).random((6, 4)) < 0.5
    both = lambda m: (m[:, 0] & m[:, 1]).astype(float)
    either = lambda m: (m[:, 0] | m[:, 1]).astype(float)
    np.testing.assert_array_equal(da.second_differences(both, (0, 1), contexts), np.ones(6))
    np.testing.assert_array_equal(da.second_differences(either, (0, 1), contexts), -np.ones(6))


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        da.main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0 and "--alpha" in text and "1437" in text


# ----------------------------------------------------------------------------- tiny run
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("data_attribution")
    args = da.build_parser().parse_args(
        [
            "--out",
            str(out),
            "--n",
            "40",
            "--targets",
            "2",
            "--alpha",
            "1",
            "--test-masks",
            "150",
            "--check-contexts",
            "8",
        ]
    )
    data, results = da.run(args)
    da.write_report(args, data, results, seconds=0.0)
    return args, data, results


def test_tiny_run_writes_report_and_image_grids(tiny):
    args, _, results = tiny
    assert len(results) == 2
    text = (args.out / "results.md").read_text()
    assert "## Per test digit" in text and "## Appendix C.1 pairs" in text
    for r in results:  # ProxySPEX's R² less LASSO's, with its paired interval over the held-out masks
        assert "{:+.3f} [{:+.3f}, {:+.3f}]".format(*r.ex.faithfulness_interval(against_lasso=True)) in text
    for png in ("synergy.png", "redundancy.png"):
        assert (args.out / png).stat().st_size > 5_000


def test_held_out_outputs_are_retrain_margins_and_the_spectrum_predicts_them(tiny):
    _, data, results = tiny
    for j, r in enumerate(results):
        assert r.ex.faithfulness > 0.7, r.ex.summary()
        for mask, output in zip(r.ex.test_masks[:3], r.ex.test_outputs[:3]):
            with threadpool_limits(1):
                logits = da.Logistic().fit_logits(data, mask)
            # compattr.values.margin computes in float32
            assert output == pytest.approx(_margins(logits, data.test_y)[j], rel=1e-6, abs=1e-6)


def test_strongest_pairs_are_checked_by_retraining(tiny):
    _, _, results = tiny
    checks = [c for r in results for c in r.checks]
    assert checks and all(np.isfinite([c.predicted, c.measured, c.stderr]).all() for c in checks)
    redundant = [c for c in checks if c.pair.kind == "redundancy"]
    assert all(np.sign(c.measured) == np.sign(c.pair.value) for c in redundant)


def test_rerun_reads_every_retrain_from_the_cache(tiny, monkeypatch):
    args, _, results = tiny

    def refuse(self, data, keep):
        raise AssertionError("retrained although the query cache holds this subset")

    monkeypatch.setattr(da.Logistic, "fit_logits", refuse)
    _, again = da.run(args)
    for first, second in zip(results, again):
        np.testing.assert_array_equal(first.ex.outputs, second.ex.outputs)
        assert [c.measured for c in first.checks] == [c.measured for c in second.checks]
