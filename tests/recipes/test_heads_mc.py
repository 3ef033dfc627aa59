"""recipes/heads_mc.py end to end on a tiny random Llama and a tiny question file."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from compattr import Explanation

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "recipes"))
import heads_mc

pytestmark = pytest.mark.slow  # runs a whole recipe script


def test_layer_range():
    """The layer groups are read by the CLI's one layer parser, and labelled by its inverse."""
    assert heads_mc.parse_layers("2-4") == [2, 3, 4] and heads_mc.parse_layers("7") == [7]
    assert heads_mc.format_layers([2, 3, 4]) == "2-4" and heads_mc.format_layers([0, 5]) == "0,5"


@pytest.mark.parametrize("count", ["9", "2", "ten", "12.5"])
def test_fewer_held_out_masks_than_an_interval_needs_are_refused_before_any_query(count, capsys):
    """The recipe reports the R² difference's interval, which needs 10 held-out masks: with
    fewer it crashed after every model query, and its results were not written."""
    with pytest.raises(SystemExit):
        heads_mc.main(["--test-masks", count, "--out", "unused"])
    assert "at least 10" in capsys.readouterr().err


def test_recipe_end_to_end(tmp_path, tiny_mc_folder):
    out = tmp_path / "out"
    questions = str(tiny_mc_folder / "questions.jsonl")
    heads_mc.main(
        [
            "--model",
            str(tiny_mc_folder / "model"),
            "--task",
            questions,
            "--transfer",
            questions,
            "--groups",
            "0-1",
            "1-2",
            "--keep",
            "0.5",
            "--seeds",
            "0",
            "1",
            "--train-questions",
            "6",
            "--alpha",
            "3",
            "--test-masks",
            "20",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    text = (out / "results.md").read_text()
    for needle in ("L0-1", "L1-2", "ProxySPEX", "LASSO", "Best-of-N", "greedy", "single-head", "cross-layer"):
        assert needle in text
    assert (out / "heads_mc.png").stat().st_size > 5000
    ex = Explanation.load(out / "explanation-L1-2-seed1")
    assert ex.n == 8 and ex.names[0] == "L1.H0"
    gap = "{:+.3f} [{:+.3f}, {:+.3f}]".format(*ex.faithfulness_interval(against_lasso=True))
    assert "R² difference [95 %]" in text and gap in text  # ProxySPEX's R² less LASSO's, its interval
    rows = json.loads((out / "results.json").read_text())
    methods = ["unpruned", "ProxySPEX", "LASSO", "Best-of-N", "greedy", "single-head"]
    # one object per seed x task (the test split, and every question as the transfer task) x group x method
    assert len(rows) == 2 * 2 * 2 * len(methods)
    for r in rows:
        assert {"group", "kept", "method", "model_calls", "test_accuracy", "ci_low", "ci_high"} <= set(r)
        assert r["ci_low"] <= r["test_accuracy"] <= r["ci_high"]
        assert r["kept"] == (8 if r["method"] == "unpruned" else 4)
    assert [r["method"] for r in rows[: len(methods)]] == methods
    calls = {r["method"]: r["model_calls"] for r in rows if r["seed"] == 0 and r["group"] == "L0-1"}
    drawn = Explanation.load(out / "explanation-L0-1-seed0").masks
    fitted = len(np.unique(np.packbits(drawn, axis=1), axis=0))  # each distinct mask is evaluated once
    assert calls["unpruned"] == 0 and calls["single-head"] == 9 and calls["LASSO"] == fitted
    assert fitted < calls["ProxySPEX"] <= fitted + 8 * 8  # the verification's rounds x per_round at most
    assert calls["greedy"] <= calls["ProxySPEX"] and calls["Best-of-N"] <= calls["ProxySPEX"]


def test_a_stopped_run_keeps_the_plans_it_finished(tmp_path, tiny_mc_folder, monkeypatch):
    """results.json and the explanation are written before the run is stopped in its second
    kept size: the first kept size's rows survive."""
    compare_plans, calls = heads_mc.tasks.compare_plans, []

    def stopped_at_the_second(*args, **kwargs):
        calls.append(args[6])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return compare_plans(*args, **kwargs)

    monkeypatch.setattr(heads_mc.tasks, "compare_plans", stopped_at_the_second)
    out, questions = tmp_path / "out", str(tiny_mc_folder / "questions.jsonl")
    argv = ["--model", str(tiny_mc_folder / "model"), "--task", questions, "--groups", "0-1", "--keep", "6", "2"]
    argv += ["--train-questions", "6", "--alpha", "3", "--test-masks", "20", "--out", str(out), "--quiet"]
    with pytest.raises(KeyboardInterrupt):
        heads_mc.main(argv)
    assert calls == [6, 2]
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 6 and {r["kept"] for r in rows} == {8, 6}  # unpruned, then the plans keeping 6
    assert "L0-1" in (out / "results.md").read_text()
    assert Explanation.load(out / "explanation-L0-1-seed0").n == 8


def test_paper_flag_is_the_papers_protocol():
    """Appendix C.2: 5,000 uniform masks, the train accuracy as the value, the first 120
    questions as train in their order, the rest as test, Best-of-5,000."""
    from compattr.tasks import QuestionSet

    args = heads_mc.parse_args(["--paper", "--seeds", "3", "4"])
    assert (args.budget, args.metric, args.train_questions, args.best_of) == (5000, "accuracy", 120, 5000)
    questions = QuestionSet([f"q{i}" for i in range(150)], [["a", "b"]] * 150, [0] * 150)
    train, test = heads_mc.split(args, questions, seed=3)
    assert train.prompts == tuple(f"q{i}" for i in range(120)) and len(test) == 30
    assert heads_mc.parse_args(["--paper", "--ilp-seconds", "5"]).ilp_seconds == 5.0
    default = heads_mc.parse_args([])
    assert (default.budget, default.metric, default.best_of, default.seeds) == (None, "logprob", None, [0])
    shuffled, _ = heads_mc.split(default, questions, seed=0)
    assert shuffled.prompts != train.prompts[:16] and len(shuffled) == 16


def test_results_of_finished_groups_survive_a_crash(tmp_path, tiny_mc_folder, monkeypatch):
    """results.json and results.md are written as each group goes: a failure in the second
    group (here, forced) leaves the first group's rows. The model runs on --device."""
    out = tmp_path / "out"
    study_group = heads_mc.study_group

    def failing_second(args, seed, model, *rest):
        assert model.device.type == "cpu" and args.device == "cpu"
        if rest[-2] == [1, 2]:
            raise RuntimeError("stopped in the second group")
        return study_group(args, seed, model, *rest)

    monkeypatch.setattr(heads_mc, "study_group", failing_second)
    argv = ["--model", str(tiny_mc_folder / "model"), "--task", str(tiny_mc_folder / "questions.jsonl")]
    argv += ["--groups", "0-1", "1-2", "--keep", "0.5", "--train-questions", "6", "--alpha", "3", "--quiet"]
    with pytest.raises(RuntimeError, match="second group"):
        heads_mc.main([*argv, "--test-masks", "20", "--device", "cpu", "--dtype", "float32", "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())
    assert {r["group"] for r in rows} == {"L0-1"} and len(rows) == 6
    assert "L0-1" in (out / "results.md").read_text() and "L1-2" not in (out / "results.md").read_text()
    with pytest.raises(ValueError, match="device"):
        heads_mc.main([*argv, "--device", "nonsense", "--out", str(tmp_path / "bad")])


def test_jobs_run_the_studies_in_processes_with_the_same_results(tmp_path, tiny_mc_folder, monkeypatch):
    """--jobs 2 runs each (seed, group) in a worker process of its own, sharing the query
    cache, and writes the same results.json as one process."""
    argv = ["--model", str(tiny_mc_folder / "model"), "--task", str(tiny_mc_folder / "questions.jsonl")]
    argv += ["--groups", "0-1", "1-2", "--keep", "0.5", "--seeds", "0", "1", "--train-questions", "6"]
    argv += ["--alpha", "3", "--test-masks", "20", "--device", "cpu", "--dtype", "float32", "--quiet"]
    heads_mc.main([*argv, "--out", str(tmp_path / "one")])

    def in_this_process(*args, **kwargs):
        raise AssertionError("a study ran in the parent process")

    monkeypatch.setattr(heads_mc, "study_group", in_this_process)  # the spawned workers import their own
    heads_mc.main([*argv, "--jobs", "2", "--out", str(tmp_path / "two")])
    one, two = (json.loads((tmp_path / f / "results.json").read_text()) for f in ("one", "two"))
    assert len(one) == 2 * 2 * 6 and two == one
    assert "L1-2" in (tmp_path / "two" / "results.md").read_text()
    assert Explanation.load(tmp_path / "two" / "explanation-L1-2-seed1").n == 8
    with pytest.raises(SystemExit):
        heads_mc.parse_args(["--jobs", "0"])


def test_a_failing_worker_lets_the_others_finish_then_raises(tmp_path, tiny_mc_folder):
    """With --jobs, a study that fails (layers the model lacks) does not lose the study
    running beside it: its rows are written, then the failure is raised."""
    out = tmp_path / "out"
    argv = ["--model", str(tiny_mc_folder / "model"), "--task", str(tiny_mc_folder / "questions.jsonl")]
    argv += ["--groups", "0-1", "7-8", "--keep", "0.5", "--train-questions", "6", "--alpha", "3"]
    argv += ["--test-masks", "20", "--device", "cpu", "--dtype", "float32", "--quiet", "--jobs", "2"]
    with pytest.raises(ValueError, match="out of range"):
        heads_mc.main([*argv, "--out", str(out)])
    rows = json.loads((out / "results.json").read_text())
    assert {r["group"] for r in rows} == {"L0-1"} and len(rows) == 6
