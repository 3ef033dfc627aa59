"""recipes/ioi_circuit.py: the IOI sentences and their ABC twins, the logit-difference value,
and a short training run whose circuit (known by exhaustive ablation) ProxySPEX must recover."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))

import ioi_circuit as ioi

import compattr

torch.set_num_threads(1)

CONFIG = ioi.IOIConfig()


def test_sentences_hold_the_subject_twice_the_object_once_and_end_with_the_end_token():
    tokens, io, subject = ioi.ioi_batch(np.random.default_rng(0), 200, CONFIG)
    assert tokens.shape == (200, CONFIG.seq_len) and (tokens[:, -1] == CONFIG.end).all()
    names = tokens < CONFIG.names
    assert (names.sum(1) == 3).all() and (io != subject).all()
    assert ((tokens == subject[:, None]).sum(1) == 2).all() and ((tokens == io[:, None]).sum(1) == 1).all()
    first = tokens[names].view(200, 3)[:, :2]  # both orders occur (ABBA and BABA)
    assert (first[:, 0] == io).any() and (first[:, 1] == io).any()
    assert ((tokens >= CONFIG.names) & (tokens < CONFIG.end)).sum(1).eq(CONFIG.seq_len - 4).all()


def test_abc_twins_replace_only_the_second_subject_by_a_third_name():
    tokens, io, subject = ioi.ioi_batch(np.random.default_rng(1), 300, CONFIG)
    twins = ioi.abc_twins(np.random.default_rng(2), tokens, io, subject, CONFIG.names)
    changed = twins != tokens
    assert (changed.sum(1) == 1).all()
    position = changed.float().argmax(1)
    rows = torch.arange(300)
    assert (tokens[rows, position] == subject).all()
    third = twins[rows, position]
    assert (third != io).all() and (third != subject).all() and (third < CONFIG.names).all()
    assert len(third.unique()) == CONFIG.names  # every name can be the third one


def test_logit_difference_reads_the_last_position():
    torch.manual_seed(0)
    model = ioi.ToyTransformer(CONFIG).eval()
    tokens, io, subject = ioi.ioi_batch(np.random.default_rng(3), 5, CONFIG)
    value = ioi.LogitDifference(io, subject)
    inputs, targets = value.prepare(model, tokens, 8)
    with torch.no_grad():
        got = value.score(model, inputs, targets)
        logits = model(tokens)[:, -1]
    expected = logits[torch.arange(5), io] - logits[torch.arange(5), subject]
    torch.testing.assert_close(got, expected)


@pytest.mark.slow
def test_a_short_run_recovers_the_exhaustive_circuit(tmp_path):
    """600 training steps and 32 sentences: the model solves the task; ProxySPEX (173 masks)
    ranks the circuit's components well and its interactions at least as well as
    single-component ablation and attribution patching."""
    args = ioi.build_parser().parse_args(["--out", str(tmp_path), "--steps", "600", "--sentences", "32"])
    r = ioi.run(args)
    assert r.accuracy > 0.9 and r.values[-1] > 3 > r.values[0]
    rows = {row["method"]: row for row in r.recovery}
    assert set(rows) == {"ProxySPEX", "single-component ablation", "attribution patching"}
    best = rows["ProxySPEX"]
    assert best["component ROC AUC"] >= 0.9
    for other in ("single-component ablation", "attribution patching"):
        assert best["interaction ROC AUC"] >= rows[other]["interaction ROC AUC"]
    path = ioi.write_report(args, r)
    assert "## Circuit recovery" in path.read_text()
    assert (tmp_path / "circuit.html").stat().st_size > 1000
    assert compattr.Explanation.load(tmp_path / "explanation").n == 12
