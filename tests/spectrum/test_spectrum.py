import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sps
from conftest import all_masks, brute_force_fourier, random_spectrum

from compattr import Spectrum
from compattr.spectrum import group_padded_rows
from compattr.spectrum.supports import (
    csr_to_padded,
    group_csr_rows,
    padded_to_csr,
    sum_padded_terms,
    take_csr_rows,
    widen_padded,
)


def test_predict_equals_the_definition(rng):
    sp = random_spectrum(9, 40, 4, seed=1)
    X = all_masks(9)
    expected = np.array(
        [sum(c * (-1) ** len(set(t) & set(np.flatnonzero(x))) for t, c in sp.to_dict().items()) for x in X]
    )
    np.testing.assert_allclose(sp.predict(X), expected, atol=1e-12)


def test_brute_force_transform_recovers_the_spectrum(rng):
    sp = random_spectrum(8, 25, 5, seed=2)
    X = all_masks(8)
    F = brute_force_fourier(sp.predict(X), X)
    d = sp.to_dict()
    for T, c in F.items():
        assert abs(c - d.get(T, 0.0)) < 1e-12


def test_duplicates_merge_and_zeros_drop():
    sp = Spectrum(4, [(1, 0), (0, 1), (2,), (3,)], [1.0, 2.0, 0.5, 0.0])
    assert sp.to_dict() == {(0, 1): 3.0, (2,): 0.5}


@pytest.mark.parametrize(
    "call",
    [
        lambda: Spectrum(3.7, [(0,)], [1.0]),
        lambda: Spectrum(True, [(0,)], [1.0]),
        lambda: Spectrum(2, [(0,)], [1.0]).top(True),
    ],
)
def test_counts_that_are_not_whole_numbers_are_refused(call):
    with pytest.raises(ValueError, match="whole number|non-negative integer"):
        call()


def test_a_spectrum_without_terms_has_float_coefficients():
    empty = Spectrum(3, [], [])
    assert len(empty) == 0 and empty.coefs.dtype == np.float64
    assert empty.with_coefs(empty.coefs).coefs.dtype == np.float64


def test_huge_coefficients_keep_their_energy_shares_and_sums_that_overflow_are_refused():
    sp = Spectrum(3, [(), (0,), (0, 1), (1, 2)], [1.0, 3.0, 2.0, 1.0])
    huge = sp.scaled(1e200)  # squares beyond float range
    e, big = sp.energy([0, 0, 1]), huge.energy([0, 0, 1])
    assert (big.linear, big.within, big.cross) == pytest.approx((e.linear, e.within, e.cross))
    assert big.total == np.inf and np.allclose(big.per_group, e.per_group)
    assert huge.top_energy(0.95).support_tuples() == sp.top_energy(0.95).support_tuples()
    with pytest.raises(ValueError, match="beyond float range"):
        Spectrum.sum([Spectrum(2, [(0,)], [1e308])] * 2)
    with pytest.raises(ValueError, match="beyond float range"):
        Spectrum(2, [(0,), (0,)], [1e308, 1e308])


def test_mean_is_the_spectrum_of_the_mean_function():
    spectra = [random_spectrum(9, 30, 4, seed=s) for s in (4, 5, 6)]
    X = all_masks(9)
    mean = Spectrum.mean(spectra)
    np.testing.assert_allclose(mean.predict(X), np.mean([sp.predict(X) for sp in spectra], axis=0), atol=1e-12)
    # term for term, order and bits included, the spectrum of the terms stacked
    stacked = Spectrum(9, sps.vstack([sp.supports for sp in spectra]), np.concatenate([sp.coefs for sp in spectra]) / 3)
    assert mean.support_tuples() == stacked.support_tuples()
    np.testing.assert_array_equal(mean.coefs, stacked.coefs)
    assert mean.supports.has_canonical_format and mean.supports.dtype == np.int8
    total = Spectrum.sum(spectra)  # the same, the coefficients not divided
    stacked = Spectrum(9, sps.vstack([sp.supports for sp in spectra]), np.concatenate([sp.coefs for sp in spectra]))
    assert total.support_tuples() == stacked.support_tuples()
    np.testing.assert_array_equal(total.coefs, stacked.coefs)
    np.testing.assert_allclose(total.predict(X), np.sum([sp.predict(X) for sp in spectra], axis=0), atol=1e-12)
    assert Spectrum.sum(spectra[:1]) is spectra[0]
    with pytest.raises(ValueError, match="the sum needs at least one"):
        Spectrum.sum([])
    assert Spectrum.mean(spectra[:1]) is spectra[0]  # as it is, not regrouped
    with pytest.raises(ValueError, match="at least one"):
        Spectrum.mean([])
    with pytest.raises(ValueError, match="different feature counts"):
        Spectrum.mean([spectra[0], random_spectrum(8, 10, 3, seed=7)])


def test_terms_are_ordered_by_magnitude_and_top_is_a_prefix(rng):
    sp = random_spectrum(12, 50, 3, seed=3)
    assert np.all(np.diff(np.abs(sp.coefs)) <= 0)
    top = sp.top(5)
    assert top.to_dict() == dict(list(sp.to_dict().items())[:5])


def test_top_energy_keeps_fraction_and_constant():
    sp = Spectrum(3, [(), (0,), (1,), (2,)], [10.0, 3.0, 2.0, 1.0])
    kept = sp.top_energy(0.9)  # 9/14 < 0.9 <= 13/14
    assert set(kept.to_dict()) == {(), (0,), (1,)}


def test_energy_split_by_group():
    sp = Spectrum(4, [(), (0,), (0, 1), (0, 2), (2, 3)], [5.0, 1.0, 2.0, 1.0, 1.0])
    groups = np.array([0, 0, 1, 1])
    e = sp.energy(groups)
    assert e.total == pytest.approx(1 + 4 + 1 + 1)
    assert e.linear == pytest.approx(1 / 7)
    assert e.within == pytest.approx(5 / 7)  # (0,1) in group 0, (2,3) in group 1
    assert e.cross == pytest.approx(1 / 7)
    assert e["cross"] == e.cross
    np.testing.assert_allclose(e.per_group.loc[0].values, [1 / 7, 4 / 7, 0.5 / 7])
    np.testing.assert_allclose(e.per_group.values.sum(), 1.0)


def test_to_frame_names_features(rng):
    sp = Spectrum(3, [(0, 2), (1,)], [2.0, -1.0])
    frame = sp.to_frame(names=["a", "b", "c"])
    assert isinstance(frame, pd.DataFrame)
    assert frame["names"].tolist() == ["a × c", "b"]
    assert frame["order"].tolist() == [2, 1]
    for names in (np.array(["a", "b", "c"]), pd.Index(["a", "b", "c"])):  # no truth value to ask
        assert sp.to_frame(names=names)["names"].tolist() == ["a × c", "b"]


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_round_trips_exactly(tmp_path, rng, suffix):
    sp = random_spectrum(40, 200, 6, seed=4)
    path = sp.save(tmp_path / f"spec{suffix}")
    back = Spectrum.load(path)
    assert back == sp
    assert np.array_equal(back.coefs, sp.coefs)  # bit for bit


def test_from_dict_round_trip(rng):
    sp = random_spectrum(10, 30, 3, seed=5)
    assert Spectrum.from_dict(sp.to_dict(), 10) == sp


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda sp: sp.predict(np.ones((3, 5), bool)), "columns"),
        (lambda sp: sp.predict(np.full((3, 4), 2)), "binary"),
        (lambda sp: sp.predict(np.ones(4, bool)), "2-D"),
        (lambda sp: sp.top(10), "larger than the spectrum"),
        (lambda sp: sp.energy([0, 1]), "shape"),
        (lambda sp: sp.save("x.txt"), "unknown spectrum file"),
    ],
)
def test_bad_input_gets_clear_errors(call, message):
    sp = Spectrum(4, [(), (1,)], [1.0, 2.0])
    with pytest.raises(ValueError, match=message):
        call(sp)


def test_constructor_rejects_bad_supports():
    with pytest.raises(ValueError, match="outside"):
        Spectrum(3, [(0, 3)], [1.0])
    with pytest.raises(ValueError, match="coefficients"):
        Spectrum(3, [(0,)], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        Spectrum(3, [(0,)], [np.nan])


def test_predict_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    sp = Spectrum(3, [(0,), (1, 2)], [1.0, 2.0])
    X = torch.tensor([[1, 0, 1], [0, 1, 1]], dtype=torch.bool)
    np.testing.assert_allclose(sp.predict(X), sp.predict(X.numpy()))


def test_load_refuses_foreign_files(tmp_path):
    path = tmp_path / "other.json"
    path.write_text('{"format": "something", "version": 1}')
    with pytest.raises(ValueError, match="not a compattr spectrum"):
        Spectrum.load(path)


@pytest.mark.parametrize("n, D", [(10, 3), (500, 11), (100_000, 7)])
def test_group_padded_rows_matches_numpy_unique(n, D):
    """One packed key (small n·D) and several lexsorted keys give numpy's row grouping."""
    rng = np.random.default_rng(D)
    lengths = rng.integers(0, D + 1, 3000)
    rows = np.full((3000, D), n, np.int64)
    for r, p in enumerate(lengths):
        rows[r, :p] = np.sort(rng.choice(min(n, 12), p, replace=False))  # few values: many repeats
    unique, inverse = group_padded_rows(rows, n)
    expected, expected_inverse = np.unique(rows, axis=0, return_inverse=True)
    np.testing.assert_array_equal(unique, expected)
    np.testing.assert_array_equal(inverse, expected_inverse.reshape(-1))
    np.testing.assert_array_equal(unique[inverse], rows)


@pytest.mark.parametrize("n, D", [(10, 3), (500, 11), (100_000, 7)])
def test_group_csr_rows_groups_blocks_as_group_padded_rows_groups_them_stacked(n, D):
    """Blocks of their own widths (one without rows, one of the constant alone) grouped
    without stacking: the same groups, in the same order, and take_csr_rows gathers the
    distinct rows (from the blocks stacked, in any order asked)."""
    rng = np.random.default_rng(D)
    rows = np.full((3000, D), n, np.int64)
    for r, p in enumerate(rng.integers(0, D + 1, 3000)):
        rows[r, :p] = np.sort(rng.choice(min(n, 12), p, replace=False))  # few values: many repeats
    parts = [rows[:1000, : D - 1], rows[1000:1000], rows[1000:2500], np.full((4, 2), n), rows[2500:]]
    parts[0] = parts[0][np.all(rows[:1000, D - 1 :] == n, axis=1)]  # rows that fit the narrower block
    blocks = [padded_to_csr(part, n) for part in parts]
    stacked = np.vstack([widen_padded(part, D, n) for part in parts])
    unique, inverse = group_padded_rows(stacked, n)
    representative, csr_inverse = group_csr_rows(blocks, n)
    np.testing.assert_array_equal(csr_inverse, inverse)
    np.testing.assert_array_equal(stacked[representative], unique)
    order = rng.permutation(len(representative))
    taken = take_csr_rows(blocks, representative[order])
    assert taken.has_canonical_format and taken.dtype == np.int8 and taken.shape == (len(order), n)
    np.testing.assert_array_equal(widen_padded(csr_to_padded(taken, n), D, n), unique[order])


@pytest.mark.parametrize("n, D", [(10, 3), (500, 11), (100_000, 7)])
def test_sum_padded_terms_sums_chunks_as_group_padded_rows_sums_them_stacked(n, D):
    """Chunks of their own widths (one without rows, one of the constant alone) and a
    generator of them: the distinct rows in lexicographic order, decoded from their keys, and
    the coefficients summed as over the stacked rows."""
    rng = np.random.default_rng(D + 1)
    rows = np.full((3000, D), n, np.int64)
    for r, p in enumerate(rng.integers(0, D + 1, 3000)):
        rows[r, :p] = np.sort(rng.choice(min(n, 12), p, replace=False))
    coefs = rng.standard_normal(3000)
    narrow = np.all(rows[:1000, D - 1 :] == n, axis=1)
    parts = [
        (rows[:1000][narrow, : D - 1], coefs[:1000][narrow]),
        (rows[1000:1000], coefs[1000:1000]),
        (np.full((4, 0), n), np.ones(4)),
        (rows[1000:], coefs[1000:]),
    ]
    stacked = np.vstack([widen_padded(part, D, n) for part, _ in parts])
    unique, inverse = group_padded_rows(stacked, n)
    expected = np.bincount(inverse, weights=np.concatenate([c for _, c in parts]), minlength=len(unique))
    summed_rows, summed = sum_padded_terms((part for part in parts), n, D)
    np.testing.assert_array_equal(summed_rows, unique)
    np.testing.assert_array_equal(summed, expected)
    assert summed_rows.dtype == (np.int32 if n < 2**31 - 1 else np.int64)


def test_sum_padded_terms_of_the_constant_alone_and_of_nothing():
    rows, coefs = sum_padded_terms([(np.zeros((2, 0), np.int64), np.array([1.0, 0.5]))], 7, 0)
    assert rows.shape == (1, 0) and coefs.tolist() == [1.5]
    rows, coefs = sum_padded_terms([], 7, 3)
    assert rows.shape == (0, 3) and coefs.shape == (0,)


def test_group_csr_rows_of_empty_rows_and_of_no_rows():
    constant = padded_to_csr(np.full((3, 2), 5), 5)  # three copies of the empty set
    representative, inverse = group_csr_rows([constant, padded_to_csr(np.zeros((0, 1), np.int64), 5)], 5)
    assert representative.shape == (1,) and 0 <= representative[0] < 3 and inverse.tolist() == [0, 0, 0]
    assert take_csr_rows([constant], representative).shape == (1, 5)
    representative, inverse = group_csr_rows([padded_to_csr(np.zeros((0, 1), np.int64), 5)], 5)
    assert representative.shape == (0,) and inverse.shape == (0,)


def test_group_padded_rows_of_no_rows():
    unique, inverse = group_padded_rows(np.zeros((0, 4), np.int64), 10)
    assert unique.shape == (0, 4) and inverse.shape == (0,)


@pytest.mark.parametrize("n, D", [(10, 3), (500, 11)])
@pytest.mark.parametrize("finder", ["find_rows", "row_finder"])
def test_find_rows_matches_a_dictionary_of_tuples(n, D, finder):
    """Each query's row in the table, or -1, as a dict of tuples gives it: widths that differ
    (the query wider and narrower), the constant, supports absent from the table, queries of
    more features than any of its rows; by find_rows and by row_finder's function of the
    table (one int64 key per row at n = 10, several at n = 500)."""
    from compattr.spectrum import supports
    from compattr.spectrum.supports import pad_supports, widen_padded

    def find_rows(table, queries, sentinel):
        if finder == "find_rows":
            return supports.find_rows(table, queries, sentinel)
        return supports.row_finder(table, sentinel)(queries)

    rng = np.random.default_rng(n)
    draw = lambda: tuple(sorted(rng.choice(min(n, D + 4), rng.integers(0, D + 1), replace=False)))
    table = sorted({draw() for _ in range(300)}, key=lambda t: rng.random())
    queries = [draw() for _ in range(500)] + [(), table[0], table[-1], tuple(range(D + 2))]
    position = {t: i for i, t in enumerate(table)}
    expected = [position.get(t, -1) for t in queries]
    assert -1 in expected and max(expected) > 0  # both outcomes occur
    table_rows, query_rows = pad_supports(table, n), pad_supports(queries, n)
    assert query_rows.shape[1] > table_rows.shape[1]  # a query longer than every row
    np.testing.assert_array_equal(find_rows(table_rows, query_rows, n), expected)
    wider = widen_padded(query_rows, query_rows.shape[1] + 2, n)
    assert wider.shape == (len(queries), query_rows.shape[1] + 2) and np.all(wider[:, -2:] == n)
    np.testing.assert_array_equal(find_rows(table_rows, wider, n), expected)
    np.testing.assert_array_equal(find_rows(widen_padded(table_rows, D + 3, n), query_rows, n), expected)
    assert find_rows(table_rows[:0], query_rows, n).tolist() == [-1] * len(queries)
    assert find_rows(table_rows, query_rows[:0], n).shape == (0,)


def test_with_coefs_re_ranks_the_same_supports_as_a_new_spectrum_would():
    rng = np.random.default_rng(5)
    supports = sorted({tuple(sorted(rng.choice(12, rng.integers(0, 4), replace=False))) for _ in range(60)})
    sp = Spectrum(12, supports, rng.standard_normal(len(supports)))
    coefs = rng.standard_normal(len(sp))
    coefs[3] = 0.0  # a zero coefficient is dropped, as by the constructor
    coefs[7] = -coefs[9]  # a tie of magnitudes
    fast, rebuilt = sp.with_coefs(coefs), Spectrum(12, sp.supports, coefs)
    assert fast.to_dict() == rebuilt.to_dict() and len(fast) == len(sp) - 1
    assert np.all(np.diff(np.abs(fast.coefs)) <= 0)  # ranked by |F(T)|
    assert fast.support_tuples() == rebuilt.support_tuples()  # equal magnitudes ranked by support too
    assert np.array_equal(fast.coefs, rebuilt.coefs)
    with pytest.raises(ValueError, match="coefficients"):
        sp.with_coefs(coefs[:-1])


def test_scaled_is_with_coefs_times_the_factor_without_its_sort():
    """Term for term (order included) what ``with_coefs(coefs * factor)`` gives, with ties of
    magnitude, a factor that rounds distinct magnitudes together, underflow to 0, 0 itself
    and a negative factor; a factor that is not finite or overflows is refused."""
    rng = np.random.default_rng(6)
    supports = sorted({tuple(sorted(rng.choice(12, rng.integers(0, 4), replace=False))) for _ in range(60)})
    coefs = rng.standard_normal(len(supports))
    coefs[5] = -coefs[8]  # a tie of magnitudes
    coefs[11] = np.nextafter(abs(coefs[12]), np.inf)  # distinct, and equal once scaled by 1/3
    coefs[20] = 5e-324  # the smallest subnormal: 0 once halved
    sp = Spectrum(12, supports, coefs)
    for factor in (2.0, -0.5, 1 / 3, 1e-300, 0.0, -7.25):
        scaled, resorted = sp.scaled(factor), sp.with_coefs(sp.coefs * factor)
        assert scaled.support_tuples() == resorted.support_tuples()
        np.testing.assert_array_equal(scaled.coefs, resorted.coefs)
    assert len(sp.scaled(0.0)) == 0 and len(sp.scaled(0.5)) == len(sp) - 1
    with pytest.raises(ValueError, match="finite"):
        sp.scaled(np.inf)
    with pytest.raises(ValueError, match="overflows"):
        sp.scaled(1e308)


def test_odd_part_is_the_odd_half_of_the_function():
    """``odd_part`` predicts ``(f(S) - f(Sᶜ)) / 2`` on every mask, and keeps only odd orders."""
    sp = random_spectrum(8, 60, 5, seed=7)
    X = all_masks(8)
    odd = sp.odd_part()
    np.testing.assert_allclose(odd.predict(X), 0.5 * (sp.predict(X) - sp.predict(~X)), atol=1e-12)
    assert len(odd) and np.all(odd.degrees % 2 == 1)
    assert len(odd) < len(sp)


@pytest.mark.parametrize("select", ["top", "restrict_order", "top_energy", "odd_part"])
def test_subsets_equal_the_spectrum_of_their_terms(select):
    """A subset keeps the terms as they are (no regrouping): the same spectrum, ordered the
    same way, as one built afresh from its terms."""
    sp = random_spectrum(10, 80, 4, seed=8)
    part = {"top": lambda: sp.top(17), "restrict_order": lambda: sp.restrict_order(2)}.get(
        select, lambda: getattr(sp, select)()
    )()
    rebuilt = Spectrum.from_dict(part.to_dict(), sp.n)
    assert part == rebuilt
    assert part.support_tuples() == rebuilt.support_tuples()
    assert np.all(np.diff(np.abs(part.coefs)) <= 0)
    with pytest.raises(ValueError):
        part.coefs[0] = 1.0  # read-only, as a spectrum's coefficients are


def test_supports_given_as_an_uncanonical_sparse_matrix_are_sorted_and_merged():
    """Unsorted column indices and repeated entries in a row still name one sorted support."""
    # row 0: {1, 3} with 3 twice; row 1: {0, 2} unsorted
    S = sps.csr_array((np.ones(5, np.int8), np.array([3, 1, 3, 2, 0]), np.array([0, 3, 5])), shape=(2, 5))
    sp = Spectrum(5, S, [1.0, 2.0])
    assert sp.to_dict() == {(0, 2): 2.0, (1, 3): 1.0}
    stored_zero = sps.csr_array((np.array([1, 0], np.int8), np.array([0, 2]), np.array([0, 2])), shape=(1, 3))
    assert Spectrum(3, stored_zero, [1.0]).to_dict() == {(0,): 1.0}  # a stored 0 is no feature
    with pytest.raises(ValueError, match="must hold 0/1"):
        Spectrum(3, stored_zero * 2, [1.0])
    indicator = np.array([[True, False, True], [False, False, False]])  # rows as masks are: not indices
    assert Spectrum(3, indicator, [1.0, 0.5]).to_dict() == {(0, 2): 1.0, (): 0.5}


def test_an_integer_matrix_of_indicator_rows_is_refused():
    """A spectrum's own supports.toarray() (int8 0/1 rows) was read as index lists: every row
    became the set {0, 1} and the coefficients were summed into one term."""
    spectrum = Spectrum.from_dict({(0, 2): 1.0, (1, 4): 2.0, (3,): 0.5}, 5)
    rows = spectrum.supports.toarray()
    with pytest.raises(ValueError, match="array of 0s and 1s"):
        Spectrum(5, rows, spectrum.coefs)
    assert Spectrum(5, rows.astype(bool), spectrum.coefs) == spectrum
    assert Spectrum(5, np.array([[0, 2], [1, 4]]), [1.0, 2.0]).to_dict() == {(0, 2): 1.0, (1, 4): 2.0}  # indices


@pytest.mark.parametrize(
    "supports",
    [
        [[True, False, True], [False, True, True]],  # bool_array.tolist()
        list(np.array([[True, False, True], [False, True, True]])),  # rows of a bool array
        [(True, False, True)],
    ],
)
def test_indicator_rows_given_as_lists_are_refused(supports):
    """A list of bool rows was read as index lists: every row became {0, 1} and the
    coefficients were summed into one term; only a bool array reads as indicator rows."""
    with pytest.raises(ValueError, match="got a bool"):
        Spectrum(3, supports, np.ones(len(supports)))
    with pytest.raises(ValueError, match="got a bool"):
        Spectrum.from_dict({tuple(supports[0]): 1.0}, 3)


def test_fractional_feature_indices_are_refused_and_integral_ones_read():
    with pytest.raises(ValueError, match="integer feature indices"):
        Spectrum(3, [[1.7]], [1.0])  # was read as feature 1
    with pytest.raises(ValueError, match="feature indices"):
        Spectrum(3, [["a"]], [1.0])
    assert Spectrum(3, [[2.0, np.int64(0)]], [1.0]).to_dict() == {(0, 2): 1.0}


def test_torch_supports_read_as_numpy_ones():
    """Torch bool rows were read as index lists (every row {0, 1}), as lists of bools were."""
    import torch

    B = np.array([[True, False, True], [False, True, True]])
    expected = Spectrum(3, B, [1.0, 2.0])
    assert Spectrum(3, torch.from_numpy(B), torch.tensor([1.0, 2.0])) == expected
    with pytest.raises(ValueError, match="got a bool"):
        Spectrum(3, list(torch.from_numpy(B)), [1.0, 2.0])
    with pytest.raises(ValueError, match="array of 0s and 1s"):
        Spectrum(3, torch.from_numpy(B.astype(np.int64)), [1.0, 2.0])
    assert Spectrum(3, torch.tensor([[0, 2], [1, 2]]), [1.0, 2.0]) == expected  # index rows


def test_indicator_rows_of_another_type_than_bool_are_refused_in_any_container():
    """0/1 rows given as lists (a JSON file's, ``df.values.tolist()``), lists of int arrays or
    from_dict keys read as index lists: every row collapsed into the set {0, 1}."""
    rows = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]])
    for supports in (rows.tolist(), list(rows), [tuple(r) for r in rows.tolist()]):
        with pytest.raises(ValueError, match="lists a feature twice"):
            Spectrum(4, supports, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="lists a feature twice"):
        Spectrum.from_dict({(1, 0, 1, 0): 1.0}, 4)
    right = Spectrum(4, rows.astype(bool), [1.0, 2.0, 3.0])
    assert right.to_dict() == {(2, 3): 3.0, (1, 3): 2.0, (0, 2): 1.0}


def test_names_are_read_by_position_also_from_a_pandas_series():
    """A Series of names (a sorted table's column) was looked up by its index labels."""
    sp = Spectrum(4, [(0,), (1, 2)], [2.0, 1.0])
    names = pd.Series(["L1.H0", "L0.H0", "L1.H1", "L0.H1"], index=[2, 0, 3, 1])
    assert sp.to_frame(names=names)["names"].tolist() == ["L1.H0", "L0.H0 × L1.H1"]
    with pytest.raises(ValueError, match="names must have 4 entries"):
        sp.to_frame(names=names[:3])


def test_small_fixes_at_the_edges():
    # top_energy(1.0) keeps every term, also beside terms whose share rounds away
    sp = Spectrum(30, [(0,)] + [(i,) for i in range(1, 20)], [1.0] + [2e-7] * 19)
    assert len(sp.top_energy(1.0)) == 20
    # positions count from the end as Python's do
    assert sp.support_tuples([-1]) == sp.support_tuples([len(sp) - 1])
    # a boolean selection picks its terms (it read as positions 0 and 1); floats are refused
    mixed = Spectrum(4, [(0,), (1, 2), (3,), (0, 3)], [1.0, 2.0, 3.0, 4.0])
    pairs = mixed.support_tuples(mixed.degrees == 2)
    assert pairs == mixed.support_tuples(np.flatnonzero(mixed.degrees == 2)) and set(pairs) == {(1, 2), (0, 3)}
    assert mixed.support_tuples([]) == []
    with pytest.raises(TypeError, match="positions"):
        mixed.support_tuples([0.0, 1.0])
    # coefficients are real numbers, one per support
    with pytest.raises(ValueError, match="real numbers"):
        Spectrum(2, [(0,)], np.array([3j]))
    with pytest.raises(ValueError, match="real numbers"):
        Spectrum(2, [(0,)], np.array(["1e3"]))
    with pytest.raises(ValueError, match="1-D"):
        Spectrum(2, [(0,), (1,)], np.ones((2, 1)))
    assert Spectrum(2, [(0,)], np.array([2], dtype=object)).to_dict() == {(0,): 2.0}
