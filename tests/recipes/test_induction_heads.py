"""recipes/induction_heads.py: the hand-written model under compattr.AttentionHeads, the exact
spectrum helpers, and a short training run whose known circuit ProxySPEX must recover."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import induction_heads as ih

import compattr

torch.set_num_threads(1)
pytestmark = pytest.mark.slow  # runs a whole recipe script


CONFIG = ih.InductionConfig()


# ----------------------------------------------------------------------------- pieces
def test_induction_batch_repeats_a_segment_and_scores_its_continuation():
    tokens, lengths = ih.induction_batch(np.random.default_rng(0), 50, CONFIG)
    weights = ih.scored_positions(lengths, CONFIG.seq_len)
    S = CONFIG.seq_len
    assert tokens.shape == (50, S) and weights.shape == (50, S - 1)
    assert lengths.min() >= CONFIG.min_segment and lengths.max() <= CONFIG.max_segment
    for row, n, w in zip(tokens, lengths, weights):
        assert torch.equal(row[S - n :], row[S - 2 * n : S - n])
        scored = torch.nonzero(w).flatten()
        # the first repeated token is predicted from the last filler/segment token: not scored
        assert scored.tolist() == list(range(S - n, S - 1))


def test_attention_heads_hook_the_hand_written_model():
    torch.manual_seed(0)
    model = ih.ToyTransformer(CONFIG).eval()
    heads = compattr.AttentionHeads(model, rescale=False)
    assert heads.n == 8 and heads.names[5] == "L1.H1" and heads.groups.tolist() == [0] * 4 + [1] * 4
    tokens, _ = ih.induction_batch(np.random.default_rng(1), 3, CONFIG)
    masks = np.random.default_rng(2).random((3, 8)) < 0.5
    with torch.no_grad(), heads.masked(masks):
        hooked = model(tokens)
    # reference: fold each row's mask into the o_proj columns of the heads it drops
    d_head = CONFIG.d_model // CONFIG.n_heads
    for row in range(3):
        folded = ih.ToyTransformer(CONFIG)
        folded.load_state_dict(model.state_dict())
        with torch.no_grad():
            for feature in np.flatnonzero(~masks[row]):
                layer, head = divmod(int(feature), CONFIG.n_heads)
                folded.layers[layer].attn.o_proj.weight[:, head * d_head : (head + 1) * d_head] = 0
            torch.testing.assert_close(hooked[row], folded(tokens[row : row + 1])[0], atol=1e-5, rtol=1e-5)


def test_corrupted_twins_keep_the_first_half_and_break_the_repeat():
    tokens, lengths = ih.induction_batch(np.random.default_rng(4), 40, CONFIG)
    twins = ih.corrupted_twins(np.random.default_rng(5), tokens, lengths, CONFIG.vocab)
    S = CONFIG.seq_len
    for row, twin, n in zip(tokens, twins, lengths.tolist()):
        assert torch.equal(twin[: S - n], row[: S - n])
        assert not torch.equal(twin[S - n :], twin[S - 2 * n : S - n])


def test_exact_spectrum_reproduces_every_mask_and_lookup_reads_the_table():
    values = np.random.default_rng(0).normal(size=2**5)
    masks = ih.all_masks(5)
    assert masks.shape == (32, 5) and masks[-1].all() and not masks[0].any()
    np.testing.assert_allclose(ih.exact_spectrum(values).predict(masks), values, atol=1e-12)
    rows = np.array([3, 17, 31])
    np.testing.assert_array_equal(ih.lookup(values)(masks[rows]), values[rows])


@pytest.mark.parametrize("gate, sign", [(np.logical_or, 1), (np.logical_and, -1)])
def test_pair_ablations_excess_is_positive_for_or_and_negative_for_and(gate, sign):
    f = lambda masks: gate(masks[:, 0], masks[:, 1]).astype(float)
    (row,) = ih.pair_ablations(f, ["a", "b", "c"], [0, 1], 3)
    assert row["pair"] == "a × b" and np.sign(row["excess"]) == sign


def test_value_kinds_and_cli_help(capsys):
    with pytest.raises(ValueError, match="kind"):
        ih.InductionValue(torch.ones(1, 31), "perplexity")
    with pytest.raises(SystemExit) as exit_:
        ih.main(["--help"])
    assert exit_.value.code == 0 and "--alpha" in capsys.readouterr().out


# ----------------------------------------------------------------------------- short run
@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """300 training steps from scratch (no cached weights), 32 sequences, default budget."""
    out = tmp_path_factory.mktemp("induction")
    args = ih.build_parser().parse_args(["--out", str(out), "--steps", "300", "--sequences", "32"])
    clock = time.perf_counter()
    result = ih.run(args)
    ih.write_report(args, result)
    return args, result, time.perf_counter() - clock


def test_short_training_learns_previous_token_and_induction_heads(short_run):
    _, r, _ = short_run
    roles = r.roles["role"]
    assert r.train_seconds is not None
    assert (roles.iloc[:4] == "previous-token").any() and not (roles.iloc[:4] == "induction").any()
    assert (roles.iloc[4:] == "induction").sum() >= 2  # redundant induction heads
    assert r.values[-1] > 0.5 > 0.05 > r.values[0]  # all heads vs none (chance 1/64)


def test_proxyspex_agrees_with_the_brute_force_spectrum(short_run):
    _, r, _ = short_run
    assert r.check.r2_all > 0.9
    assert r.check.r2_unseen > 0.9
    assert r.check.top_overlap >= 0.7
    assert r.ex.faithfulness > r.ex.lasso_faithfulness


def test_the_interacting_heads_are_found(short_run):
    """ProxySPEX's strongest pairwise Möbius interaction joins a layer-0 previous-token head with
    a layer-1 induction head, as the exact spectrum's does."""
    _, r, _ = short_run
    c = r.check
    assert c.circuit_pair
    assert ih.pair_category(c.top_pair_exact, r.roles, r.ex.groups) == "previous-token × induction"
    assert r.ex.groups[c.top_pair[0]] == 0 and r.ex.groups[c.top_pair[1]] == 1
    moebius = {
        "exact": compattr.indices.moebius(ih.exact_spectrum(r.values)),
        "ProxySPEX": compattr.indices.moebius(r.ex.spectrum),
    }
    means = {row["pairs"]: row for row in ih.pair_summary(moebius, r.roles, r.ex.groups)}
    for source in moebius:  # the cross-layer synergy dominates the within-layer interactions
        key = f"mean Möbius ({source})"
        within = max(abs(means["within L0"][key]), abs(means["within L1"][key]))
        assert means["previous-token × induction"][key] > 3 * within


def test_redundant_induction_heads_are_super_additive(short_run):
    _, r, _ = short_run
    assert r.check.induction_pairs >= 1
    assert r.check.super_additive == r.check.induction_pairs
    assert r.check.super_additive_predicted == r.check.induction_pairs


def test_the_circuit_is_recovered_with_its_interactions(short_run):
    """Against the circuit by exhaustive ablation, ProxySPEX finds every component and ranks
    the interactions at least as well as single-head ablation and attribution patching."""
    _, r, _ = short_run
    rows = {row["method"]: row for row in r.recovery}
    size = int(ih.exhaustive_circuit(r.values).components.sum())
    assert rows["ProxySPEX"][f"component precision@{size}"] == 1.0
    for other in ("single-component ablation", "attribution patching"):
        assert rows["ProxySPEX"]["interaction ROC AUC"] >= rows[other]["interaction ROC AUC"]


def test_heads_and_mlps_patched_from_corrupted_twins(tmp_path):
    """``--mlp --ablation patch``: ten components, all 1024 masks, the recovery table."""
    args = ih.build_parser().parse_args(
        ["--out", str(tmp_path), "--steps", "150", "--sequences", "16", "--mlp", "--ablation", "patch", "--alpha", "4"]
    )
    r = ih.run(args)
    assert r.ex.n == 10 and r.ex.names[-2:] == ["L0.MLP", "L1.MLP"] and len(r.values) == 1024
    assert r.roles.loc["L1.MLP", "role"] == "MLP"
    assert r.ex.kinds.tolist() == ["AttentionHeads"] * 8 + ["MLPBlocks"] * 2
    assert {row["method"] for row in r.recovery} == {
        "ProxySPEX",
        "single-component ablation",
        "attribution patching",
    }
    assert "patched from a corrupted twin" in ih.write_report(args, r).read_text()


def test_report_figures_and_caches(short_run):
    args, r, seconds = short_run
    text = (args.out / "results.md").read_text()
    assert "## Checks" in text and "ProxySPEX R² all 256 masks" in text
    for png in ("exact_vs_proxyspex.png", "head_interactions.png", "energy.png"):
        assert (args.out / png).stat().st_size > 10_000
    assert compattr.Explanation.load(args.out / "explanation").n == 8
    assert seconds < 60
    again = ih.run(args)  # weights and queries come from --out
    assert again.train_seconds is None
    np.testing.assert_allclose(again.ex.outputs, r.ex.outputs)
    np.testing.assert_allclose(again.values, r.values, atol=1e-6)
