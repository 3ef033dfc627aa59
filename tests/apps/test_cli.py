"""The ``compattr`` command line, end to end on a tiny random Llama and a tiny question file."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

import compattr
from compattr.cli import main, markdown_table, parse_layers, plan_size


@pytest.fixture(scope="module")
def assets(tiny_mc_folder):
    return tiny_mc_folder


def _run(assets, tmp_path, command: str, *extra: str) -> int:
    return main(
        [
            command,
            str(assets / "model"),
            "--task",
            str(assets / "questions.jsonl"),
            "--questions",
            "6",
            "--budget",
            "60",
            "--test-masks",
            "10",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            "--quiet",
            *extra,
        ]
    )


def test_help_names_the_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "explain" in out and "prune" in out and "shapley" in out
    for command in ("explain", "prune", "shapley"):
        assert main([command, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text and "--layers" in text and "smollm2" in text
    assert main([]) == 2  # no subcommand


def test_explain_writes_the_explanation(assets, tmp_path, capsys):
    assert _run(assets, tmp_path, "explain", "--layers", "1-2") == 0
    out = tmp_path / "out"
    for name in (
        "spectrum.json",
        "lasso.json",
        "queries.npz",
        "explanation.json",
        "summary.txt",
        "interactions.csv",
        "settings.json",
        "heads.png",
        "energy.png",
        "circuit.png",
        "circuit.html",
    ):
        assert (out / name).is_file(), name
    (cache,) = (out / "queries").iterdir()  # the query cache root holds one cache: this run's
    assert (cache / "manifest.json").is_file()
    ex = compattr.Explanation.load(out)
    assert ex.n == 8 and ex.names[0] == "L1.H0" and len(ex.masks) == 60
    table = pd.read_csv(out / "interactions.csv")  # the strongest terms, each with its interval
    strongest = ex.interactions(50)
    assert list(table["names"]) == list(strongest["names"]) and np.allclose(table["coef"], strongest["coef"])
    assert (table["ci_low"] <= table["ci_high"]).all() and (table["stderr"] >= 0).all()
    assert table["nonzero"].tolist() == ((table["ci_low"] > 0) | (table["ci_high"] < 0)).tolist()
    settings = json.loads((out / "settings.json").read_text())
    assert settings["layers"] == [1, 2] and settings["questions"] == 6
    # what ran, not only what was asked: the split, the dtype and device the model ran in
    # a JSONL task has no split: none recorded (it recorded the unused default "test")
    assert settings["split"] is None and settings["dataset_config"] is None and settings["features"] == "heads"
    assert settings["model_dtype"] == "float32" and settings["device"] == "cpu" and "batch_size" in settings
    captured = capsys.readouterr()
    assert "faithfulness" in captured.out and "8 heads (layers 1-2 x 4)" in captured.out
    assert "it/s]" not in captured.err and "fits" not in captured.err  # --quiet: no progress bar


def test_explain_records_the_held_out_masks_it_has(assets, tmp_path, capsys):
    """8 heads have 256 masks: of 1,000 asked, fewer are held out, and the header and
    settings.json record those (they recorded the 1,000 asked)."""
    assert _run(assets, tmp_path, "explain", "--layers", "1-2", "--test-masks", "1000") == 0
    out = tmp_path / "out"
    held_out = len(compattr.Explanation.load(out).test_masks)
    assert held_out < 256
    settings = json.loads((out / "settings.json").read_text())
    assert settings["test_masks"] == held_out and settings["test_masks_asked"] == 1000
    assert f"+ {held_out} held-out masks" in (out / "summary.txt").read_text().splitlines()[0]


def _shapley(assets, tmp_path, *extra: str) -> int:
    model, questions = str(assets / "model"), str(assets / "questions.jsonl")
    common = ["--task", questions, "--questions", "6", "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"]
    return main(["shapley", model, *common, *extra])


def test_shapley_writes_the_values_with_their_intervals(assets, tmp_path, capsys):
    assert _shapley(assets, tmp_path, "--layers", "1-2", "--budget", "121", "--folds", "3") == 0
    out = tmp_path / "out"
    for name in ("shapley.csv", "groups.csv", "shapley.png", "summary.txt", "shapley.npz", "settings.json"):
        assert (out / name).is_file(), name
    (cache,) = (out / "queries").iterdir()
    assert (cache / "manifest.json").is_file()
    sv = compattr.ShapleyExplanation.load(out / "shapley.npz")
    assert sv.masks.shape == (120, 8)  # 121 asked: 60 complementary pairs
    assert (sv.masks[1::2] == ~sv.masks[0::2]).all() and sv.names[0] == "L1.H0"
    refit = compattr.PairedShapley(random_state=0).fit(sv.masks, sv.outputs)
    np.testing.assert_array_equal(sv.values, refit.shapley_)
    table = pd.read_csv(out / "shapley.csv")
    assert list(table.columns) == ["feature", "name", "group", "shapley", "stderr", "ci_low", "ci_high", "nonzero"]
    np.testing.assert_allclose(table.sort_values("feature")["shapley"], refit.shapley_)
    assert table["name"][table["feature"] == 0].item() == "L1.H0" and set(table["group"]) == {1, 2}
    assert (table["ci_low"] <= table["shapley"]).all() and (table["shapley"] <= table["ci_high"]).all()
    groups = pd.read_csv(out / "groups.csv")
    assert list(groups.columns) == ["group", "shapley", "stderr", "ci_low", "ci_high", "nonzero"]
    assert list(groups["group"]) == [1, 2] and groups["shapley"].sum() == pytest.approx(refit.shapley_.sum())
    settings = json.loads((out / "settings.json").read_text())
    assert settings["command"] == "shapley" and settings["folds"] == 3 and settings["test_masks"] is None
    assert settings["intervals"] is True
    printed = capsys.readouterr().out
    assert "budget 120, seed 0" in printed and "f(all kept) - f(none kept)" in printed
    assert "jackknife intervals" in printed


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--budget", "60"), "leaves 48 masks after the jackknife"),
        (("--budget", "48", "--no-intervals"), "needs at least 50"),
        (("--test-masks", "10"), "unrecognized arguments: --test-masks"),
        (("--no-intervals", "--folds", "3"), "does nothing with --no-intervals"),  # was recorded as used
    ],
)
def test_bad_shapley_input_exits_2_before_any_query(assets, tmp_path, capsys, extra, message):
    assert _shapley(assets, tmp_path, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "queries").exists()


def test_prune_writes_plans_and_table(assets, tmp_path, capsys):
    code = _run(assets, tmp_path, "prune", "--keep", "0.5", "--min-per-layer", "1", "--best-of", "15")
    assert code == 0
    out = tmp_path / "out"
    assert (out / "explanation" / "spectrum.json").is_file() and (out / "explanation" / "heads.png").is_file()
    table = pd.read_csv(out / "results.csv")
    assert table["method"].tolist() == ["unpruned", "ProxySPEX", "LASSO", "Best-of-N", "greedy", "single-head"]
    assert table["heads kept"].tolist() == [12, 6, 6, 6, 6, 6]
    assert table["model calls"].tolist()[3] == 15 and table["model calls"].tolist()[-1] == 13
    settings = json.loads((out / "explanation" / "settings.json").read_text())
    assert settings["best_of"] == 15 and settings["min_per_layer"] == 1 and settings["test_questions"] == 6
    assert table["test accuracy"].between(0, 1).all()
    for name in ("proxyspex", "lasso", "best_of_n", "greedy", "single_head"):
        plan = compattr.PruningPlan.from_json(out / "plans" / f"{name}.json")
        assert plan.kept.sum() == 6 and (plan.kept_per_group()["kept"] >= 1).all()
    assert (out / "results.md").read_text().startswith("| method")
    printed = capsys.readouterr().out
    assert "test: 6" in printed and "Best-of-N" in printed
    assert compattr.tasks.verdict(table) in printed  # which plan won, in words


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--keep", "1.5"], "--keep must be"),
        (["--keep", "13"], "--keep must be"),
        (["--keep", "0"], "--keep must be"),
        (["--keep", "-0.2"], "--keep must be"),
        (["--keep", "0.01"], "rounds to no feature kept"),
        (["--keep", "150%"], "--keep must be"),
        (["--keep", "12.0"], "--keep must be"),
        (["--keep", "a third"], "expected a count of heads (30), a fraction (0.3) or a percentage (30%)"),
        (["--layers", "2-5"], "out of range"),
        (["--min-per-layer", "3", "--keep", "6"], "--min-per-layer 3"),
        (["--questions", "12"], "leaves no test questions"),
        (["--questions", "11"], "at least 2 test questions"),
        (["--test-questions", "1"], "at least 2 test questions"),
    ],
)
def test_bad_prune_input_exits_2_with_a_message(assets, tmp_path, capsys, extra, message):
    assert _run(assets, tmp_path, "prune", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_keep_parses_like_the_api():
    """--keep "1" is the int 1 (one head), "1.0" the fraction 1.0 (all); one rule decides."""
    from compattr.cli import keep_value

    assert keep_value("1") == 1 and isinstance(keep_value("1"), int)
    assert keep_value("0.3") == 0.3 and keep_value("30%") == 0.3 and keep_value("1.0") == 1.0
    assert plan_size(keep_value("1"), 90) == 1 and plan_size(keep_value("1.0"), 90) == 90
    assert plan_size(keep_value("30%"), 90) == 27 and plan_size(keep_value("30"), 90) == 30
    # halves up on the decimal as written (0.29 is 0.28999... in binary: 14.5 rounded down)
    assert plan_size(keep_value("0.29"), 50) == 15 and plan_size(keep_value("0.7"), 45) == 32
    assert plan_size(keep_value("57%"), 50) == 29 and plan_size(keep_value("14.5%"), 100) == 15
    assert plan_size(keep_value("0.25"), 10) == 3 and plan_size(keep_value("0.24"), 10) == 2
    assert keep_value("1.4%") == 0.014 and plan_size(keep_value("1.4%"), 250) == 4  # 1.4 / 100 is 0.01399...


@pytest.fixture
def broken_questions(assets, tmp_path):
    """The asset questions with line 3 replaced by ``line``."""

    def write(line: str) -> str:
        lines = (assets / "questions.jsonl").read_text().splitlines()
        path = tmp_path / "broken.jsonl"
        path.write_text("\n".join([*lines[:2], line, *lines[3:]]) + "\n")
        return str(path)

    return write


@pytest.mark.parametrize(
    "line, message",
    [
        ("null", "broken.jsonl:3 must be an object"),
        ("5", "broken.jsonl:3 must be an object"),
        (
            '{"prompt": "w1 w2", "options": "w3w4w5", "answer": 0}',
            "broken.jsonl:3: 'options' must be a list of strings",
        ),
        ('{"prompt": "w1 w2", "options": {"w3": 0, "w4": 1, "w5": 2}, "answer": 0}', "must be a list of strings"),
    ],
)
def test_question_lines_that_are_no_question_exit_2(assets, tmp_path, capsys, broken_questions, line, message):
    assert main(["explain", str(assets / "model"), "--task", broken_questions(line), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--alpha", "inf"], "expected a finite number > 0, got 'inf'"),
        (["--alpha", "0"], "expected a finite number > 0"),
        (["--test-masks", "1"], "expected an integer >= 2"),
        (["--device", "foo"], "unknown device 'foo'"),
        (["--device", "cuda"], "device 'cuda' is not available on this machine"),
        (["--layers", "2", "--test-masks", "5"], "at least 2 are needed"),  # 4 heads: 16 masks, 60 fitted
        (["--budget", "20"], "budget must be at least 50"),
        # a JSONL task has neither: they were ignored, and recorded as used
        (["--split", "validation"], "not a datasets dataset: it has no split or configuration (split='validation')"),
        (["--dataset-config", "high_school_us_history"], "not a datasets dataset"),
    ],
)
def test_bad_run_settings_exit_2_before_any_query(assets, tmp_path, capsys, monkeypatch, extra, message):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _run(assets, tmp_path, "explain", *extra) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out" / "queries").exists()  # nothing was queried


def test_unsafe_pickled_model_is_refused_in_one_line(assets, tmp_path, capsys):
    from test_models import pickled_model_folder

    folder = pickled_model_folder(tmp_path / "pickled")
    code = main(["explain", str(folder), "--task", str(assets / "questions.jsonl"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "refused to load pytorch_model.bin" in err and "weights_only" in err


def test_prune_notes_predictions_the_metric_cannot_take(assets, tmp_path, capsys, monkeypatch):
    """A ProxySPEX prediction of a positive log-probability gets a note under the table."""
    compare = compattr.tasks.compare_plans

    def positive(*args, **kwargs):
        plans, table = compare(*args, **kwargs)
        table.loc[1, "predicted"] = 0.49
        return plans, table

    monkeypatch.setattr(compattr.tasks, "compare_plans", positive)
    assert _run(assets, tmp_path, "prune", "--keep", "6") == 0
    note = "note: predicted value outside the value function's range [-∞, 0]: ProxySPEX +0.49"
    assert note in capsys.readouterr().out
    out = tmp_path / "out"
    assert note in (out / "results.md").read_text()
    # without --best-of, Best-of-N drew as many kept-sets as ProxySPEX's calls (was written null)
    calls = pd.read_csv(out / "results.csv").set_index("method")["model calls"]
    assert json.loads((out / "explanation" / "settings.json").read_text())["best_of"] == calls["ProxySPEX"]


def test_prune_writes_its_results_before_the_figures(assets, tmp_path, capsys, monkeypatch):
    """Interrupted while the explanation's figures were saved, a prune into a folder of an
    earlier run kept that run's results beside this run's settings, and printed nothing."""
    from compattr.apps import cli

    assert _run(assets, tmp_path, "prune", "--keep", "6", "--best-of", "5") == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "write_explanation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(assets, tmp_path, "prune", "--keep", "3", "--best-of", "5")
    out = tmp_path / "out"
    assert pd.read_csv(out / "results.csv")["heads kept"].tolist()[1:] == [3] * 5
    assert compattr.PruningPlan.from_json(out / "plans" / "proxyspex.json").kept.sum() == 3
    assert "pruning plans keeping 3 of 12 heads" in capsys.readouterr().out


def test_an_interrupted_explain_leaves_no_file_of_an_earlier_run(assets, tmp_path, capsys, monkeypatch):
    """Interrupted while it computed interactions.csv, an explain into the folder of an
    earlier run left that run's interactions.csv (and figures) beside this run's explanation."""
    assert _run(assets, tmp_path, "explain", "--layers", "1-2") == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compattr.Explanation, "uncertainty", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(assets, tmp_path, "explain", "--layers", "1-2", "--seed", "1")
    out = tmp_path / "out"
    assert json.loads((out / "settings.json").read_text())["seed"] == 1
    for name in ("interactions.csv", "heads.png", "energy.png", "circuit.png", "circuit.html"):
        assert not (out / name).exists(), name


def test_an_interrupted_shapley_leaves_no_file_of_an_earlier_run(assets, tmp_path, capsys, monkeypatch):
    """shapley.npz is written last: interrupted there, the earlier run's stayed beside this
    run's summary and tables."""
    assert _shapley(assets, tmp_path, "--layers", "1-2", "--budget", "61", "--no-intervals") == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(compattr.ShapleyExplanation, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _shapley(assets, tmp_path, "--layers", "1-2", "--budget", "61", "--no-intervals", "--seed", "1")
    out = tmp_path / "out"
    assert json.loads((out / "settings.json").read_text())["seed"] == 1
    assert not (out / "shapley.npz").exists()


def test_bad_model_task_and_flags_exit_2(assets, tmp_path, capsys):
    q = str(assets / "questions.jsonl")
    assert main(["explain", "./no-such-model", "--task", q]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["explain", str(assets / "model"), "--task", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["explain", str(assets / "model"), "--layers", "a-b"]) == 2
    assert "expected layers like 20-29" in capsys.readouterr().err
    assert main(["explain", str(assets / "model"), "--value", "f1"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["explain", str(assets / "model"), "--budget", "5", "--alpha", "2"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_unknown_alias_is_reported_with_the_aliases(assets, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    assert main(["explain", "smollm3", "--task", str(assets / "questions.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "smollm3" in err and "smollm2" in err


def test_helpers():
    assert parse_layers("20-22,5") == [5, 20, 21, 22]
    assert parse_layers("3") == [3]
    for text in ("20-", "-3"):  # "20-" read as layer 20 alone
        with pytest.raises(argparse.ArgumentTypeError, match="expected layers like 20-29"):
            parse_layers(text)
    assert plan_size(0.3, 90) == 27 and plan_size(1.0, 90) == 90 and plan_size(12, 90) == 12
    assert [plan_size(0.5, n) for n in (5, 7, 9, 11)] == [3, 4, 5, 6]  # halves up, for odd n alike
    table = markdown_table(pd.DataFrame({"method": ["a"], "acc": [0.5]}))
    assert table.splitlines() == ["| method | acc   |", "|--------|-------|", "| a      | 0.500 |"]
    nullable = pd.DataFrame({"m": ["a", "b"], "k": pd.array([1, None], dtype="Int64"), "v": [0.5, np.nan]})
    assert markdown_table(nullable).splitlines()[-1] == "| b |   |       |"  # blank, not <NA> or nan


def test_interval_text():
    from compattr.apps.report import interval_text

    assert interval_text((0.2575, -0.095, 0.4486)) == "0.258 [-0.095, 0.449]"
    assert interval_text((-0.0385, -0.2218, 0.2747), signed=True) == "-0.038 [-0.222, +0.275]"
