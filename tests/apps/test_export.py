"""compattr.apps.export: interaction values in shapiq's InteractionValues format."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import compattr
from compattr.apps import export

#: A Python with shapiq installed (its own environment): the round trip runs through it.
SHAPIQ_PYTHON = os.environ.get("COMPATTR_SHAPIQ_PYTHON")


@pytest.fixture
def sp():
    return compattr.synthetic.complete_hierarchy(7, n_sets=3, order=3, seed=4)


@pytest.mark.parametrize("index", list(export.SHAPIQ_INDICES))
def test_json_holds_the_index_in_shapiqs_layout(sp, index, tmp_path):
    path = export.write_shapiq_json(sp, tmp_path / "values.json", index, 2, budget=123, description="test")
    payload = json.loads(path.read_text())
    meta = payload["metadata"]
    assert payload["object_name"] == "InteractionValues" and payload["data_type"] == "interaction_values"
    assert meta["n_players"] == 7 and meta["index"] == index and meta["max_order"] == 2
    assert meta["estimation_budget"] == 123
    expected = export.shapiq_values(sp, index, 2)
    # f(∅), but FBII's own empty-set value (the faithful fit's intercept), as shapiq holds it
    baseline = expected[()] if index == "FBII" else sp.predict(np.zeros((1, 7), bool))[0]
    assert meta["baseline_value"] == pytest.approx(baseline)
    keys = {("Empty" if not t else ",".join(map(str, t))): v for t, v in expected.items()}
    assert payload["data"] == pytest.approx(keys)
    assert meta["min_order"] == 0 and "Empty" in payload["data"]
    assert max(len(k.split(",")) for k in payload["data"] if k != "Empty") <= 2


def _with_empty_value(terms: dict, n: int, empty: float) -> compattr.Spectrum:
    """The spectrum of ``terms`` with the constant that makes f(∅) = ``empty``."""
    without = compattr.Spectrum.from_dict({**terms, (): 0.0}, n).predict(np.zeros((1, n), bool))[0]
    sp = compattr.Spectrum.from_dict({**terms, (): empty - float(without)}, n)
    assert sp.predict(np.zeros((1, n), bool))[0] == pytest.approx(empty, abs=1e-15)
    return sp


def test_an_empty_set_value_of_zero_is_kept():
    """``indices`` drop exact zeros: an f(∅) of 0 left the file without its empty set, and
    min_order 1 where shapiq's own values have 0."""
    shifted = _with_empty_value({(0,): 1.0, (1,): 1.0, (0, 1): 0.5}, 3, 0.0)
    values = export.shapiq_values(shifted, "k-SII", 2)
    assert values[()] == 0.0 and next(iter(values)) == ()


def test_values_are_compattrs_indices(sp):
    assert export.shapiq_values(sp, "k-SII", 3) == pytest.approx(compattr.indices.k_sii(sp, 3))
    assert export.shapiq_values(sp, "SII", 2) == pytest.approx(compattr.indices.shapley_interaction(sp, max_order=2))
    assert export.shapiq_values(sp, "Moebius", 7) == pytest.approx(compattr.indices.moebius(sp))


def test_bad_requests_are_refused(sp, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown shapiq index"):
        export.shapiq_values(sp, "SHAP")
    with pytest.raises(ValueError, match="max_order"):
        export.shapiq_values(sp, "k-SII", 0)
    with pytest.raises(ValueError, match=r"\.json"):
        export.write_shapiq_json(sp, tmp_path / "values.txt")
    import builtins

    real_import = builtins.__import__

    def no_shapiq(name, *args, **kwargs):
        if name == "shapiq":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_shapiq)
    with pytest.raises(ImportError, match="write_shapiq_json"):
        export.to_shapiq(sp)


@pytest.mark.skipif(not SHAPIQ_PYTHON, reason="set COMPATTR_SHAPIQ_PYTHON to a Python with shapiq installed")
def test_shapiq_loads_the_file_and_its_plots_read_it(sp, tmp_path):
    path = export.write_shapiq_json(sp, tmp_path / "values.json", "k-SII", 2)
    script = (
        "import json, sys; from pathlib import Path; from shapiq import InteractionValues\n"
        "iv = InteractionValues.from_json_file(Path(sys.argv[1]))\n"
        "second = iv.get_n_order_values(2)\n"
        "print(json.dumps({'values': {','.join(map(str, t)): float(iv[t]) for t in iv.interaction_lookup},"
        " 'baseline': iv.baseline_value, 'pair01': float(second[0, 1])}))\n"
    )
    out = json.loads(
        subprocess.run([SHAPIQ_PYTHON, "-c", script, str(path)], capture_output=True, check=True, text=True).stdout
    )
    ours = export.shapiq_values(sp, "k-SII", 2)
    assert out["values"] == pytest.approx({",".join(map(str, t)): v for t, v in ours.items()})
    assert out["pair01"] == pytest.approx(ours.get((0, 1), 0.0))


@pytest.mark.skipif(not SHAPIQ_PYTHON, reason="set COMPATTR_SHAPIQ_PYTHON to a Python with shapiq installed")
@pytest.mark.parametrize("empty", [0.7, 0.0])
def test_every_index_is_what_shapiqs_exact_computer_gives(tmp_path, empty):
    """Each exported file, loaded by shapiq, equals shapiq's ExactComputer on the same function:
    values, empty set, min/max order and baseline value."""
    n, rng = 6, np.random.default_rng(0)
    terms = {tuple(sorted(rng.choice(n, order, replace=False).tolist())): float(rng.normal()) for order in (1, 2, 3, 4)}
    sp = _with_empty_value(terms, n, empty)
    every = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(bool)  # row b keeps the features of b's bits
    np.save(tmp_path / "table.npy", sp.predict(every))
    files = [
        (index, order, str(export.write_shapiq_json(sp, tmp_path / f"{index}{order}.json", index, order)))
        for index in export.SHAPIQ_INDICES
        for order in (1, 2, 3)
    ]
    (tmp_path / "files.json").write_text(json.dumps(files))
    script = (
        "import json, sys, warnings; from pathlib import Path; import numpy as np\n"
        "from shapiq import ExactComputer, InteractionValues\n"
        "warnings.simplefilter('ignore'); folder, n = Path(sys.argv[1]), int(sys.argv[2])\n"
        "table = np.load(folder / 'table.npy')\n"
        "exact = ExactComputer(lambda C: table[(np.asarray(C, int) << np.arange(n)).sum(1)], n_players=n)\n"
        "rows = []\n"
        "for index, order, path in json.loads((folder / 'files.json').read_text()):\n"
        "    ours, ref = InteractionValues.from_json_file(Path(path)), exact(index, order)\n"
        "    keys = {k for k in set(ref.dict_values) | set(ours.dict_values) if len(k) <= order}\n"
        "    rows.append([index, order, max(abs(ours[k] - ref[k]) for k in keys), ours.min_order, ref.min_order,"
        " ours.baseline_value, ref.baseline_value])\n"
        "print(json.dumps(rows))\n"
    )
    done = subprocess.run(
        [SHAPIQ_PYTHON, "-c", script, str(tmp_path), str(n)], capture_output=True, check=True, text=True
    )
    for index, order, error, min_order, ref_min_order, baseline, ref_baseline in json.loads(done.stdout):
        assert error < 1e-6, (index, order)  # FSII: shapiq's least squares, to about 1e-8
        assert min_order == ref_min_order and baseline == pytest.approx(ref_baseline, abs=1e-9), (index, order)
