"""The ProxySPEX estimator: gradient-boosted trees as a proxy, read as a sparse spectrum.

:meth:`ProxySPEX.fit` runs the paper's four stages (§3.3), each timed in ``timings_``:

1. **search** (:mod:`~compattr.proxy.search`) – LightGBM hyper-parameters by 5-fold CV over
   the paper's grid (depth 3 / 5 / unlimited × learning rate 0.01 / 0.1 × up to 5,000
   trees). Efficiently: every fit is scored at every tree prefix and stopped early (so one fit
   covers every tree count up to 5,000, a superset of the paper's {500, 1000, 5000}). With
   ``search="race"`` (default) the six (depth, learning-rate) configurations race on the first
   fold by successive halving with the grid's tree counts as rungs (all six up to 500 trees,
   the best two up to 1,000, the best one up to 5,000), and only the winner is fitted on the
   other four folds, with at most the trees it kept on the first (the race chose the tree
   count too); ``search="full"`` cross-validates every configuration on all folds. On fewer
   than :data:`REPEAT_MASKS` masks the default grid keeps learning rate 0.1 alone
   (:data:`SMALL_BUDGET_RATES`): there 0.01 costs ten times the trees and fits no better.
   With ``challenge`` (default), on :data:`REPEAT_MASKS` masks or more, a winner whose
   spectrum explains something but less than :data:`REPEAT_BELOW` on the first fold meets the
   best fit of each other depth there, and the one whose spectrum explains most goes on: in
   noise, shallow trees can score best as trees while holding no term above their depth.
   With ``all_folds="auto"`` (default) the race's winner is fitted on the other folds only
   when its first fold leaves something to learn: when the best top-k of that fold's spectrum
   already explains :data:`SETTLED_ABOVE` of the variance of the fold's held-out outputs, the
   first fold's ensemble alone goes on, and k is chosen on that fold. On large budgets that
   skips four of the search's seven or so fits.
   With ``final_fit`` (by default while the CV leaves more than 0.2 % of the variance
   unexplained) the winner is also fitted on every mask, with the folds' mean tree count
   scaled by the data's growth (m over a fold's training masks: 5/4 with 5 folds), as a model
   refitted after cross-validation is.
2. **extract** (:mod:`~compattr.proxy.trees`) – the exact Fourier spectrum of each of the 5
   fold ensembles; their average (a bagged ensemble, exactly representable), averaged half
   and half with the spectrum of the fit on every mask, is the proxy's spectrum.
3. **sparsify** (:mod:`~compattr.proxy.sparsify`) – keep the top-k terms by ``|F(T)|``, with
   k chosen by the same 5-fold CV among powers of two. Each fold is scored with the ranking
   of the ensemble that never saw it, so the choice of k is honest. The same CV chooses
   whether the top terms are re-ranked by their refitted coefficients (``ranking``: the
   largest candidate's terms refitted by ridge least squares, the k of largest ``|β(T)|``
   kept), which drops terms the trees rank high only by spreading a true term's weight, or
   the re-ranked top k are kept with every subset of theirs (their downward closure,
   refitted), which restores the lower-order terms of a hierarchy that the top k leave out.
   With ``tilt="cv"`` it also chooses the ranking's tilt towards higher orders
   (``|F(T)| * tilt ** |T|``, ``tilt`` 1 or 1.2); the closure and the growth below now
   restore the high-order terms the tilt was for, so by default the ranking is the paper's.
4. **refit** (:mod:`~compattr.proxy.leastsquares`) – refit the kept coefficients by least
   squares on the ±1 parity features when that lowers the CV error.
5. **grow** (:func:`~compattr.proxy.sparsify.grown_pool`) – trees of limited depth cannot hold
   a term of higher order than their depth, and deep ones rank a hierarchy's top terms low.
   The kept terms with all their subsets are joined by every set of three or more features
   all of whose pairs are kept (the cliques of the kept pairs' graph, with ``cliques``) and
   by every set one order above whose subsets one order below are all kept (the Apriori
   algorithm's candidates), or all but one for sets of three or more features
   (``missing_subsets``: a triple of which the fit kept every pair but one; the closure
   ranking restores that pair), and the terms are chosen again from that pool, re-ranked by
   their ridge refit, k and the closure by the same CV. Each fold grows the terms that its
   own ensemble and training masks keep, so the CV error is as honest as the sparsity CV's,
   and the grown terms replace the kept ones when it is lower. ``grow="auto"`` runs it
   wherever the CV explains something and less than :data:`FINAL_FIT_BELOW` of the variance
   (from :data:`EXPLAINS_ABOVE`): with pursuit it lifts a hierarchy's R² at small budgets
   too, where each of the ``repeats`` grows its own fit (at n = 100, α = 2 about +0.08 of R²
   for a quarter more CPU, and the cliques about +0.08 more).
   With ``pursue`` the kept terms first gain the trees' terms that their residual
   correlates with most (:func:`~compattr.proxy.sparsify.pursued_terms`, one round of
   matching pursuit), and the pool grows from both: trees rank a hierarchy's high-order
   terms below their own fragments, and in the residual of the kept terms they stand out.
6. **regrow** (``regrow="auto"``) – with several ``repeats``, their
   average keeps each term some fit found, but with a third of its weight where one fit
   alone found it. From a first fit whose CV explains at least :data:`REGROW_ABOVE` and less
   than :data:`REPEAT_BELOW` of the variance (where one fit's terms are few and uncertain),
   the average's terms are grown as in stage 5 and chosen again (k, ranking and
   ridge by CV over the ``cv`` folds, k at most a quarter of a fold's training masks), then
   refitted on every mask: the fits' terms together hold more of a hierarchy than any one of
   them. The pool comes from every mask, so this CV flatters it, and the more so the more
   terms it keeps: hence the threshold and the cap; and where the CV chooses the cap itself
   (it wants more terms than it can judge), the average stays, unless the regrown terms at
   half the cap still cut the first fit's CV error by more than a third (``regrow_capped``:
   to below :data:`REGROW_CAPPED_BELOW` of it), where they are taken. A second round
   (``regrow_rounds``) grows the regrown terms by one more order and chooses again, unless
   the CV again chooses the cap. It lifts a complete hierarchy's R² at n = 100, α = 2 (mean
   0.50 → 0.61 on tuning functions, and a second round a further 0.015). On real
   functions (attention heads, sentences, photos) the guards keep the average: without
   the last one it had lowered the demo's heads from 0.302 to 0.263, and on the head
   functions made since, to check it, the CV chose the cap every time it ran.
7. **guide** (``guide_rounds``) – after a regrow that was taken, trees are fitted to the
   outputs less the spectrum's terms of order :data:`GUIDE_FROM_ORDER` and above, with the
   first fit's depth, learning rate and tree count, one ensemble on each fold's training
   masks. Trees find a term by splitting on its features one after another, led by the
   marginal effects of its subsets: in the outputs those effects are there, but so are the
   higher-order terms found already, which the trees fit first; without them the trees'
   splits reach the higher-order terms the fit missed. Each fold's pool is the spectrum's
   terms with as many of its ensemble's largest, grown as in stage 6, and the terms are
   chosen again by the same CV (k, ranking and ridge); they replace the spectrum where the
   CV error is below the regrow's (then below the last round's). A round's candidates on
   each fold come from that fold's training masks alone. It lifts a complete hierarchy's R²
   at n = 100, α = 2 (mean 0.755 → 0.812 on tuning functions, 0.685 → 0.734 on eight
   others) for about one CPU second.
8. **extend** (``extend_rounds``; :mod:`~compattr.proxy.extension`) – a term of a hierarchy
   that every stage above missed stands out in the residual of the terms found: its Walsh
   feature is a kept term's times one feature's, so one matrix product scores every kept
   term extended by every feature. Each round adds the extensions the residual correlates
   with most (:data:`EXTEND_SHARE` of a fold's training masks in sets) and refits; the
   rounds and the ridge strength are chosen by CV over the folds of ``seed_``, each fold's
   path run on its training masks alone, and taken where that CV error is below the one the
   terms had (stage 6's or 7's, else the first fit's). Where the first fit's CV explains at
   least :data:`EXPLAINS_ABOVE` and less than :data:`FINAL_FIT_BELOW`, and the terms leave
   room for a round (at most half a fold's training masks, and ``max_k``). It lifts a
   complete hierarchy's R² at n = 100, α = 2 from 0.778 to 0.999 on twelve functions not
   tuned on (eleven exact), for about 0.4 CPU seconds.

With ``repeats`` (by default :data:`REPEATS` fits while the first one's CV explains something
and less than :data:`REPEAT_BELOW` of the variance, or, on fewer than :data:`REPEAT_MASKS`
masks, anything short of an exact fit) the four stages run again with other fold splits and
seeds, and the final spectra are averaged: at small budgets the CV's choices (the trees, k,
the ranking, the ridge) vary with the split, and their average is steadier than any one. The
fits after the first search the grid without the first one's tree depth (``vary_depth``): a
few hundred masks often favour shallow trees, which hold no term above their depth, and an
average of other shapes recovers what one shape misses. On
fewer than :data:`REPEAT_MASKS` masks, a first fit whose CV explains nothing gets a second
opinion from the next seed, since one split of a few hundred masks can miss a weak function.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import KFold
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from .._validation import (
    as_masks,
    as_outputs,
    check_auto_or_int,
    check_int,
    is_int,
    is_real,
    output_offset,
    output_scale,
    scale_errors,
)
from ..query.masks import budget
from ..spectrum import Spectrum
from ..spectrum.supports import csr_to_padded, padded_to_csr
from .extension import extended, extension_cv
from .leastsquares import least_squares
from .search import Config, Fit, fit_all, mask_dataset, search, without_depth
from .sparsify import (
    candidate_ks,
    closed_terms,
    cv_subset,
    grown_cv,
    grown_pool,
    pursued_terms,
    refit_ranked_terms,
    sparsity_cv,
    top_terms,
)
from .trees import TreesTooDeep

#: The paper's grid (appendix B): tree depth (None = unlimited), trees, learning rate.
PAPER_GRID = {"max_depth": (3, 5, None), "n_estimators": (500, 1000, 5000), "learning_rate": (0.01, 0.1)}

#: The most raw terms an ensemble's exact extraction may expand to (``2^depth`` per leaf). A
#: search whose trees of unlimited depth pass it runs again without them (:meth:`ProxySPEX.fit`).
MAX_TREE_TERMS = 50_000_000

#: ``final_fit="auto"`` adds the fit on every mask while the CV explains less of the variance
#: (where the search settles on its first fold, above :data:`SETTLED_ABOVE`, it has nothing to add).
FINAL_FIT_BELOW = 0.998

#: ``all_folds="auto"`` fits the race's winner on the other folds only while its first fold
#: explains less of the variance.
SETTLED_ABOVE = 0.998

#: A CV that explains less of the variance explains nothing: ``grow="auto"`` does not grow
#: its terms (no hierarchy to grow) and ``repeats="auto"`` does not average it with more fits
#: (nothing to steady). On the Synthetic Peak at n = 100 (no sparse structure; α = 1–8, seeds
#: 1–5) the CV R² lies within ±0.007; on the Complete Hierarchy at α = 1 it is 0.03 or more,
#: with 10 dB noise too.
EXPLAINS_ABOVE = 0.01

#: ``repeats="auto"`` averages this many fits when the first one's CV explains at least
#: :data:`EXPLAINS_ABOVE` of the variance and less than :data:`REPEAT_BELOW`, or, on fewer
#: than :data:`REPEAT_MASKS` masks, less than :data:`FINAL_FIT_BELOW`: on folds of a few
#: hundred masks the CV's choices vary with the split whatever it explains, and there three
#: fits cost a few seconds. From :data:`REPEAT_MASKS` masks, a race winner whose first fold
#: explains that little is first challenged by the other tree depths (``challenge``).
REPEATS = 3
REPEAT_BELOW = 0.5
REPEAT_MASKS = 2000

#: ``regrow="auto"`` regrows the repeats' average (stage 6 in the module docstring) when the
#: first fit's CV explains at least this much of the variance. Tuning functions (complete
#: hierarchy, n = 100, seeds 1–20; docs/results.md): at α = 2 the CV R² was 0.11–0.29 and
#: regrowing raised the mean held-out R² from 0.50 to 0.61 (18 higher, 1 lower); at α = 1
#: (CV R² 0.02–0.12) it had lowered every one of ten; at α = 1.5 and with 10 dB noise at
#: α = 2 it regrew 5 and 12 of 20, the mean R² 0.172 → 0.174 and 0.358 → 0.379. Not from
#: :data:`REPEAT_BELOW` on: there the average is steady, and on the sentence explanations
#: (CV R² about 0.9) regrowing lowered the held-out R² of all twenty by 0.001–0.02. With the
#: guard at the cap (:meth:`ProxySPEX._regrow`) the means are 0.498 → 0.608 at α = 2,
#: 0.172 → 0.172 at α = 1.5 and 0.358 → 0.375 with 10 dB noise. With that guard and two
#: rounds (:data:`REGROW_ROUNDS`) the bound went from 0.14 down to 0.09: of the tuning seeds
#: with a first-fit CV R² below 0.14 whose regrow ran (α = 1–4, with and without noise),
#: those from 0.09 gained on 18 of 22 (at α = 2: +0.09 to +0.25 on 8 of 9), those below it
#: on 4 of 13. At α ≤ 1.25 all seven that ran lost, whatever their CV R², but there the
#: guard stopped the regrow on most seeds (docs/results.md).
REGROW_ABOVE = 0.09

#: ``regrow_rounds``: stage 6 runs up to this many rounds, each growing the last one's terms by
#: one more order (a hierarchy's order-4 and -5 terms are two orders above what a fit on a few
#: hundred masks keeps). Tuning functions (complete hierarchy, n = 100, α = 2, seeds 1–20,
#: the 16 regrown; docs/results.md): two rounds raised the mean held-out R² by 0.015 (12
#: higher, 2 lower by at most 0.003), with 10 dB noise by 0.008 (6 of 7 higher), each round
#: for about 0.13 CPU s; a third added 0.002 without noise, with a loss of 0.02 on one seed.
REGROW_ROUNDS = 2

#: ``regrow_capped``: a first regrow round whose CV chooses the cap (the largest k it may) is
#: still taken, at the best k of at most half the cap, when that k's CV error is below this
#: share of the first fit's (``1 - cv_r2_`` of the variance), and the next round follows. At the cap the CV
#: flatters the regrown terms the most (their pool has seen every mask), which is why
#: otherwise the average stays; but where the regrow cuts the first fit's error by more than a
#: third, it has found a hierarchy the average misses, and half the cap is what a flattered CV
#: still judges.
#: Tuning functions (complete hierarchy, n = 100, seeds 1–30 at α = 2 with and without 10 dB
#: noise, seeds 1–20 at α = 1 and 1.5 with and without it; docs/results.md): the capped
#: rounds with a share below 0.65 gained on 14 of 16 (mean +0.07 of held-out R²; the two
#: losses 0.008 and 0.028); every capped round of the saved real head functions had a share
#: of 0.699 (the demo's heads) to 0.96, and there half the cap lost on seven of eight, up to
#: 0.45 (the demo's: −0.16). The second round after such a round added 0.013 more on
#: average (9 higher, 4 lower by at most 0.016). The share was once read at the cap itself:
#: on the demo's queries made on a later machine it was 0.627 there (half the cap: 0.728)
#: and the round taken cut the held-out R² from 0.258 to 0.060, on another head function
#: (α = 4) 0.605 (0.706) from 0.656 to 0.629; measured on the half-cap row that is taken,
#: neither is; on 150 hierarchy seeds not tuned on (n = 100, α = 1.5, 2, and 2 with 10 dB)
#: the five capped rounds taken stayed the same, and of the tuning seeds one changed (10 dB
#: seed 16, half the cap at 0.656: 0.601 → 0.332).
REGROW_CAPPED_BELOW = 0.65

#: ``guide_rounds``: after a regrow that was taken (stage 6), up to this many rounds of
#: guided trees (stage 7 in the module docstring), each taken only where its CV error is below
#: the last one's. Tuning functions (complete hierarchy, n = 100, α = 2, seeds 1–8;
#: docs/results.md): one round raised the mean held-out R² from 0.755 to 0.797, a second to
#: 0.812 (six of eight higher, none lower); with 10 dB noise no round was taken (the CV never
#: fell). At α = 1 (no regrow) the same trees lowered the mean from 0.072 to 0.033, and on the
#: sentence and photo explanations (no regrow) from 0.907 to 0.897: hence only after a regrow.
GUIDE_ROUNDS = 2

#: ``extend_rounds``: rounds at most of stage 8 (the kept terms extended one feature at a
#: time where their residual correlates; module docstring). Complete hierarchies, n = 100,
#: mean held-out R² on seeds not tuned on (docs/results.md): α = 2 0.778 → 0.999 (seeds
#: 101–112, all higher), with 10 dB noise 0.486 → 0.504, α = 1.5 0.317 → 0.330, n = 200
#: α = 1 0.660 → 0.817; level at α = 1, at n = 60 and on the Synthetic Peak, and on the
#: saved sentence, photo and head explanations, where its CV never chose a round.
EXTEND_ROUNDS = 12

#: Sets added per round of stage 8, as a share of a fold's training masks (chosen on
#: tuning seeds 1–6; 0.01 and 0.02 with more rounds gave the same mean on seeds 17–24).
EXTEND_SHARE = 0.04

#: Stage 8's rounds end once this many in a row have not lowered its CV error (3 gave
#: the same choices on tuning seeds 7–18).
EXTEND_PATIENCE = 2

#: The guided trees (stage 7) are fitted to the outputs less the spectrum's terms of this
#: order and above (from order 2 or 4 they raised the tuning functions' mean R² less).
GUIDE_FROM_ORDER = 3

#: The growth (stages 5–7) offers a set of three or more features one order above the terms
#: it grows from where at most this many of its subsets one order below are missing among
#: them (0: none, the Apriori algorithm's candidates). A hierarchy's term of order 3 of
#: which the fit kept every pair but one is then offered, and the closure ranking restores
#: that pair. Tuning functions (complete hierarchy, n = 100, α = 2, seeds 1–24;
#: docs/results.md): mean held-out R² 0.730 with 0, 0.769 with 1; on seeds 101–116, not tuned
#: on, 0.731 → 0.779 (14 higher, 1 lower). Where nothing is regrown it changes little: the
#: saved sentence and photo explanations and the hierarchies at α = 1 and 4 are level.
MISSING_SUBSETS = 1

#: The learning rates of the default grid (``grid=None``) on fewer than :data:`REPEAT_MASKS`
#: masks: the paper's 0.01 needs ten times the trees of 0.1 and, on a few hundred masks per
#: fold, fits no better (hierarchy at n = 100, α = 1 and 2, tuning seeds: the same mean R²
#: for 16–20 % less CPU; docs/results.md).
SMALL_BUDGET_RATES = (0.1,)

#: ``pursue=True``: rounds of matching pursuit before the growth, each adding
#: ``PURSUE_SHARE × len(kept)`` terms from the trees' ``PURSUE_POOL × max k`` largest.
PURSUE_ROUNDS = 1
PURSUE_POOL = 4
PURSUE_SHARE = 0.5

#: Ranking tilts the top-k chooses from with ``tilt="cv"`` (terms ranked by |F(T)| tilt^|T|).
TILTS = (1.0, 1.2)

#: Rankings the top-k chooses from with ``ranking="cv"``: the trees' coefficients, the pool of
#: the largest candidate k re-ranked by its ridge refit, or that re-ranked top k with all
#: their subsets (their downward closure), refitted.
RANKINGS = ("trees", "refit", "closure")

#: Ridge strengths the refit chooses from with ``ridge="cv"`` (penalty per mask; 0 = least squares).
RIDGES = (0.0, 0.01, 0.03, 0.1, 0.3)

_MIN_MASKS = 50  # 5 folds of at least 10 masks


class ProxySPEX(RegressorMixin, BaseEstimator):
    """Sparse Fourier attribution through a gradient-boosted-tree proxy (Butler et al., 2025).

    Parameters
    ----------
    k : "cv", int or None
        Number of Fourier terms kept: chosen by cross-validation (default), a fixed number,
        or None to keep every term of the trees.
    refit : "auto", bool
        Refit the kept coefficients by least squares: when it lowers the CV error ("auto"),
        always, or never. With ``k=None`` every tree term keeps the trees' coefficient (no
        refit; ``refit=True`` is refused).
    ridge : "cv", float or sequence of floats
        Ridge strength of the refit: each non-constant coefficient is penalised by ``ridge``
        times the number of masks (so a strength means the same shrinkage at any budget).
        "cv" chooses it by the same cross-validation as k among :data:`RIDGES`; a float fixes
        it (0 = plain least squares, the paper's refit); a sequence is the grid to choose from.
    tilt : float or "cv"
        Top-k ranks the trees' terms by ``|F(T)| * tilt ** |T|``: 1 (default) is the paper's
        ranking by magnitude; above 1 favours higher orders, whose coefficients the trees
        spread thin. "cv" chooses it with k by the same cross-validation among :data:`TILTS`
        (a fixed k then ranks by magnitude alone), at about a quarter more CPU: the closure
        and the growth restore those terms already.
    ranking : "cv", {"trees", "refit", "closure"} or a sequence of them
        With k="cv": keep the top k by the trees' coefficients ("trees", the paper's rule);
        refit the top ``max(candidate k)`` terms by ridge least squares and keep the k of
        largest refitted ``|β(T)|`` ("refit"; the CV does the same on each fold's training
        masks); or keep those re-ranked top k with every subset of theirs, refitted
        ("closure": a term's lower-order subsets, which a hierarchy holds and the top k may
        leave out; for the k whose closure holds at most ``max(candidate k)`` terms, the
        first strength of ``ridge`` re-ranking). "cv" lets the same cross-validation choose
        among :data:`RANKINGS`, a sequence among those it names, e.g. ``("trees", "refit")``.
        A fixed k or ``energy`` ranks by the trees.
    energy : float, optional
        Instead of top-k, keep the fewest terms holding this fraction of the non-constant
        energy (the public shapiq rule, e.g. 0.95). Overrides ``k``.
    max_k : int
        Largest k of the top-k candidates in the CV (also capped at half the training
        masks). The untruncated tree spectrum competes too and wins when its CV error is
        lowest, so the result can hold more than ``max_k`` terms.
    max_cv_rows : int
        The choice of k is cross-validated on at most this many masks (a random subset),
        which bounds its cost (masks × k²) on large budgets; the final refit uses all.
    grid : dict, optional
        Hyper-parameter grid with keys ``max_depth``, ``n_estimators``, ``learning_rate``
        (a key left out takes :data:`PAPER_GRID`'s values). Default: :data:`PAPER_GRID`, on
        fewer than :data:`REPEAT_MASKS` masks with the learning rates
        :data:`SMALL_BUDGET_RATES` only (0.1: on a few hundred masks per fold, 0.01 costs ten
        times the trees and fits no better); ``grid=PAPER_GRID`` is the paper's grid at any
        budget. Where trees of unlimited depth grow too deep to read exactly (more than
        :data:`MAX_TREE_TERMS` raw terms), the search runs again without them, with a
        warning (``search_grid_`` is the grid searched).
    search : {"race", "full"}
        How the grid is searched (see module docstring).
    final_fit : "auto", bool or float
        Also fit the chosen configuration on every mask and average its spectrum with the
        folds' (module docstring): always (True), never (False: the folds' average alone), or
        while the cross-validated fit explains less than this fraction (a float in (0, 1]) or
        ("auto") :data:`FINAL_FIT_BELOW` of the variance, where the extra fit has something
        to add.
    challenge : bool
        With ``search="race"`` on :data:`REPEAT_MASKS` masks or more (True, default): when the
        best top-k of the race winner's spectrum explains at least :data:`EXPLAINS_ABOVE` and
        less than :data:`REPEAT_BELOW` of the variance of the first fold's held-out outputs
        (where ``repeats`` would repeat the fit), the best fit of each other tree
        depth on that fold (by validation error, as far as the race trained it) is scored the
        same way, and the fit whose spectrum's best top-k has the lowest error goes on in the
        winner's place (``challenge_``). Trees hold no term above their depth: on noisy
        outputs depth-3 trees can score best as trees while their spectrum misses a
        hierarchy's higher orders. False: the race's winner goes on (the paper's choice, by
        the trees' validation error).
    all_folds : "auto" or True
        Fit the race's winner on every fold (True), or ("auto") only while its first fold
        explains less than :data:`SETTLED_ABOVE` of its held-out variance with the best top-k
        of its spectrum; above it, the first fold's ensemble is the trees' spectrum and k is
        chosen on that fold (module docstring). ``search="full"`` always fits every fold.
    repeats : "auto" or int
        Fit this many times, with the fold splits and LightGBM seeded by ``seed``,
        ``seed + 1``, ..., and average the final spectra (which can then hold more terms than
        one fit's k); "auto": :data:`REPEATS` fits while the first fit's CV explains at least
        :data:`EXPLAINS_ABOVE` of the variance (below it, there is nothing to steady) and
        less than :data:`REPEAT_BELOW` (small or noisy budgets, where one fit's choices vary
        most with its split), or, on fewer than :data:`REPEAT_MASKS` masks, less than
        :data:`FINAL_FIT_BELOW` (folds of a few hundred masks vary whatever they explain);
        else one; one with a fixed k or ``energy``. With "auto", a first fit that explains
        less than :data:`EXPLAINS_ABOVE` on fewer than :data:`REPEAT_MASKS` masks gets a
        second opinion: the fit seeded ``seed + 1`` replaces it when that one explains at
        least that much (``seed_``), and the repeats follow from its seed.
    vary_depth : bool
        With several ``repeats``: the fits after the first search the grid without the tree
        depth the first one chose (True, default; when the grid has another), so the average
        mixes tree shapes; False: every fit searches the whole grid. On a few hundred masks
        the search often prefers shallow trees, which hold no term above their depth, and
        three fits of depth 3 then miss the same high-order terms.
    grow : "auto", bool or float
        Grow the kept terms' hierarchy by one order and choose the terms again (stage 5 in the
        module docstring), keeping the result when its CV error is lower: always (True),
        never (False, the paper's procedure), or while the fit's CV explains at least this
        fraction (a float in [0, 1)) or ("auto") :data:`EXPLAINS_ABOVE` of the variance, and less
        than :data:`FINAL_FIT_BELOW`. Only with
        k="cv" and refit not False (the grown terms are refitted and ranked by their refit,
        closed under subsets only where ``ranking`` allows "closure"); each of the repeats
        grows its own fit.
    regrow : "auto", bool or float
        With several ``repeats``: grow their average's terms by one order, choose the terms
        again by CV and refit them on every mask (stage 6 in the module docstring): always
        (True), never (False: the average as it is), or when the first fit's CV explains at
        least this fraction (a float in [0, 1)) or ("auto", default) :data:`REGROW_ABOVE`,
        and less than :data:`REPEAT_BELOW` of the variance. With True, a float and "auto"
        alike, the average stays where the CV's best k is the largest it may choose (but see
        ``regrow_capped``). Only
        with k="cv" and refit not False, like ``grow``. It helps functions with a hierarchy
        (a term's subsets present with it) at small budgets; without its guards it lowered
        the held-out R² of real attention-head functions by up to 0.31.
    regrow_rounds : int
        Rounds of the regrow at most (default :data:`REGROW_ROUNDS`): each further round
        grows the last round's terms by one more order and chooses them again the same way;
        the rounds end at the first whose CV chooses the largest k it may (that round's
        terms are not taken, unless ``regrow_capped`` says otherwise). 1: the regrow of one
        order alone.
    regrow_capped : float
        A first regrow round whose CV chooses the largest k it may is taken all the same, at
        the best k of at most half that largest, when that k's CV error is below this share
        of the first fit's (a float in [0, 1]; default :data:`REGROW_CAPPED_BELOW`), and the
        next round follows. 0: such a round is never taken (the average stays).
    guide_rounds : int
        After a regrow that was taken, rounds of guided trees at most (stage 7 in the module
        docstring; default :data:`GUIDE_ROUNDS`): trees fitted to the outputs less the
        spectrum's terms of order :data:`GUIDE_FROM_ORDER` and above offer the terms the fit
        missed, and the terms are chosen again by CV, kept where its error falls. 0: none;
        none either with a ``max_order`` below :data:`GUIDE_FROM_ORDER` (no such terms).
    extend_rounds : int
        Rounds at most of stage 8 (module docstring; default :data:`EXTEND_ROUNDS`): the
        terms extended one feature at a time where their residual points, the rounds and
        ridge strength chosen by CV and taken where its error falls. 0: none.
    pursue : bool
        Before growing, add to the kept terms the trees' terms their residual correlates with
        most (stage 5 in the module docstring; :data:`PURSUE_ROUNDS` round(s) of
        :func:`~compattr.proxy.sparsify.pursued_terms`), on each fold as on every mask, so the
        same CV judges them. False: the growth alone.
    cliques : bool
        The growth (stages 5 and 6) also offers every set of three or more features all of
        whose pairs are among the terms it grows from (the cliques of their pairs' graph),
        ahead of the one-order-up candidates (True, default): a hierarchy's higher-order
        terms then need their pairs found, not every subset one order below (at n = 100,
        α = 2 about +0.08 of R² on tuning functions, for no more CPU). False: the
        one-order-up candidates alone.
    missing_subsets : {0, 1}
        The growth (stages 5–7) offers a set of three or more features one order above the
        terms it grows from where all its subsets one order below are among them but at most
        this many (default :data:`MISSING_SUBSETS`, 1): a hierarchy's triple is offered where
        the fit found two of its pairs, and the closure ranking restores the third. 0: every
        subset (the Apriori algorithm's candidates). A pair needs both its features either way.
    cv : int
        Number of folds.
    num_threads : int
        LightGBM threads. Keep 1 on small shared machines, where more threads ran slower
        (docs/results.md); raise it on a dedicated many-core machine.
    max_order : int, optional
        No term above this order: the trees' terms above it are dropped, and the growth
        (stages 5 and 6) stops at it. Default: no limit.
    seed : int
        Seeds the folds, the subsamples and LightGBM.

    Attributes
    ----------
    spectrum_ : Spectrum
        The final sparse spectrum (the average of the repeats' when there were several).
    repeats_ : int
        Number of fits averaged into ``spectrum_``; the other attributes describe the first.
    seed_ : int
        The seed of that first fit: ``seed``, or ``seed + 1`` where a second opinion replaced
        a fit that explained nothing (``repeats``).
    tree_spectrum_ : Spectrum
        The full spectrum of the trees (the folds' average, with the fit on every mask when
        there was one), before sparsification.
    tree_models_ : list of (float, str)
        The weight and LightGBM model text of each ensemble averaged into ``tree_spectrum_``
        (fitted to the scaled outputs; :meth:`predict_trees` evaluates them).
    best_params_ : dict
        The chosen ``max_depth``, ``learning_rate`` and ``n_estimators`` (mean best
        iteration of the folds); ``final_trees``: the trees of the fit on every mask, when
        there was one.
    cv_r2_ : float
        Cross-validated R² of the first fit's kept terms as stage 3 chose them: 1 - (lowest
        CV mean squared error of the top-k, or of the trees when no k was cross-validated) /
        variance of ``y``; 1 for constant outputs. The later stages (growth, repeats,
        regrow, guided trees, extension) go on from it and decide by it; the terms they
        leave in ``spectrum_`` may explain much more (``spectrum_cv_r2_``). The folds split
        the rows: where masks repeat (few features), a repeat can sit on both sides, and the
        CV then scores outputs the fit has seen (held-out masks, as ``compattr.explain``
        draws them, do not repeat the fitting masks).
    spectrum_cv_r2_ : float
        Cross-validated R² of the terms ``spectrum_`` holds, as the last stage that chose them
        scored them (stage 3's ``cv_r2_``, or the growth's, regrow's, guided trees' or
        extension's lowest CV error, on the same folds or on those of ``seed_``); NaN where
        no CV scored them (an average of repeats that no later stage chose again, a fixed
        rule without a CV). Each stage keeps the candidate of lowest CV error, so this reads
        a little high, as a minimum over candidates does.
    k_ : int
        Number of kept terms (of the first fit); ``refit_`` : bool, whether they were refitted; ``ridge_`` :
        float, the ridge strength of the refit (NaN without refit); ``tilt_`` : float, the
        tilt the kept terms were ranked with; ``ranking_`` : str, "trees", "refit" or
        "closure", how they were ranked.
    spectrum_ridge_ : float
        The ridge strength at which ``spectrum_`` is the refit of its own terms on every
        mask (each non-constant coefficient penalised by it times the masks): ``ridge_``, or
        the strength a later stage (grow, regrow, guided trees, extension) refitted its terms
        at; NaN where ``spectrum_`` is no such refit (the trees' coefficients kept, an
        average of repeats that no stage refitted, constant outputs). What a bootstrap of
        the spectrum's terms refits at (:func:`compattr.spectrum.bootstrap`).
    search_grid_ : dict
        The grid the search ran on (``grid``; of the first fit).
    cv_results_ : pandas.DataFrame
        Every configuration scored: ``max_depth``, ``learning_rate``, ``rung``, ``folds``,
        ``best_iteration`` and ``cv_mse`` (CV mean squared error).
    challenge_ : pandas.DataFrame
        When the race's winner was challenged (``challenge``): one row per fit compared on
        the first fold, the winner first, with its ``max_depth``, ``learning_rate``,
        ``best_iteration``, the trees' validation error ``tree_mse``, the error of its
        spectrum's best top-k ``spectrum_mse`` and whether it went on (``chosen``); else empty.
    sparsity_cv_ : pandas.DataFrame
        CV mean squared error for each k, tilt and ranking, without refit and refitted at each
        ridge strength.
    grown_ : bool
        Whether ``spectrum_`` is the grown one (stage 5; of the first fit).
    grow_cv_ : pandas.DataFrame
        CV mean squared error of the grown pools for each k, ranking ("refit" or "closure")
        and ridge strength (:func:`~compattr.proxy.sparsify.grown_cv`), to compare with
        ``sparsity_cv_``; empty when growth did not run.
    regrown_ : bool
        Whether ``spectrum_`` is the repeats' average regrown (stage 6).
    regrow_rounds_ : int
        The regrow's rounds taken (0 when ``spectrum_`` is not regrown): the orders by which
        the average's terms were grown.
    regrow_cv_ : pandas.DataFrame
        CV mean squared error of the regrown pool for each k, ranking and ridge strength (as
        ``grow_cv_``) and ``round`` (1, 2, ...: see ``regrow_rounds``); empty when it did not
        run.
    guide_rounds_ : int
        The rounds of guided trees taken (stage 7; 0 when none was).
    guide_cv_ : pandas.DataFrame
        CV mean squared error of the guided pools for each k, ranking and ridge strength (as
        ``grow_cv_``) and ``round``; empty when stage 7 did not run.
    extend_rounds_ : int
        The rounds of stage 8 taken (0 when none was).
    extend_cv_ : pandas.DataFrame
        CV mean squared error of stage 8 for each ``rounds`` (0: the terms as they were,
        refitted) and ``ridge``, with the ``terms`` held on the first fold
        (:func:`~compattr.proxy.extension.extension_cv`); empty when it did not run.
    timings_ : dict
        CPU seconds per stage: ``search`` (with the check whether the first fold settles it),
        ``extract``, ``sparsify``, and ``grow``, ``regrow``, ``guide`` and ``extend`` when
        they ran; a search run again without unlimited depth counts both attempts.

    Notes
    -----
    The trees are fitted to ``(y - c) / s``: ``c`` the outputs' midrange where they do not
    straddle zero, else 0 (a log-likelihood near -1e4 that moves by 1e-3 keeps its
    differences in LightGBM's float32 labels), and
    ``s`` the power of two that brings ``max |y - c|`` into ``[0.5, 1)``; the spectra are
    scaled back by ``s`` (exact in floating point, so the result is the same for ``y`` scaled
    by any power of two; another factor rounds the outputs differently, which can tip a
    close choice of the CV) and ``c`` joins their constant. Outputs as large as 1e300 fit
    too (the CV errors are in units of ``y²``, infinite where that overflows).

    Constant outputs have an exact answer: the spectrum holds only the constant (no tree is
    fitted, ``best_params_`` is None) and a warning says so. Masks that are all the same
    while the outputs vary cannot be attributed to any feature: ``ValueError``.
    """

    def __init__(
        self,
        k="cv",
        *,
        refit="auto",
        ridge="cv",
        tilt=1.0,
        ranking="cv",
        energy: float | None = None,
        max_k: int = 1000,
        max_cv_rows: int = 20_000,
        grid: dict | None = None,
        search: str = "race",
        challenge: bool = True,
        final_fit="auto",
        all_folds="auto",
        repeats="auto",
        vary_depth: bool = True,
        grow="auto",
        regrow="auto",
        regrow_rounds: int = REGROW_ROUNDS,
        regrow_capped: float = REGROW_CAPPED_BELOW,
        guide_rounds: int = GUIDE_ROUNDS,
        extend_rounds: int = EXTEND_ROUNDS,
        pursue: bool = True,
        cliques: bool = True,
        missing_subsets: int = MISSING_SUBSETS,
        cv: int = 5,
        num_threads: int = 1,
        max_order: int | None = None,
        seed: int = 0,
    ) -> None:
        self.k = k
        self.refit = refit
        self.ridge = ridge
        self.tilt = tilt
        self.ranking = ranking
        self.energy = energy
        self.max_k = max_k
        self.max_cv_rows = max_cv_rows
        self.grid = grid
        self.search = search
        self.challenge = challenge
        self.final_fit = final_fit
        self.all_folds = all_folds
        self.repeats = repeats
        self.vary_depth = vary_depth
        self.grow = grow
        self.regrow = regrow
        self.regrow_rounds = regrow_rounds
        self.regrow_capped = regrow_capped
        self.guide_rounds = guide_rounds
        self.extend_rounds = extend_rounds
        self.pursue = pursue
        self.cliques = cliques
        self.missing_subsets = missing_subsets
        self.cv = cv
        self.num_threads = num_threads
        self.max_order = max_order
        self.seed = seed

    # ------------------------------------------------------------------ public API
    @property
    def min_masks(self) -> int:
        """The fewest masks :meth:`fit` accepts: 10 per fold, and at least 50."""
        return max(_MIN_MASKS, 10 * self.cv)

    def fit(self, X, y) -> ProxySPEX:
        """Fit the proxy on masks ``X`` (m, n) bool and model outputs ``y`` (m,)."""
        self.check_params()
        X, y = self._check_inputs(X, y)
        offset = output_offset(y)
        y = y - offset  # the stages see outputs about zero (see Notes); offset added back last
        with threadpool_limits(self.num_threads):  # BLAS for the refit, like LightGBM
            self._fit(X, y)
            self.seed_ = self.seed
            if self._wants_second_opinion(len(y)):
                self._second_opinion(X, y)
            self.repeats_ = self._wanted_repeats(len(y))
            self.regrown_, self.regrow_rounds_, self.regrow_cv_ = False, 0, pd.DataFrame()
            self.guide_rounds_, self.guide_cv_ = 0, pd.DataFrame()
            self.extend_rounds_, self.extend_cv_ = 0, pd.DataFrame()
            error: float | None = None  # the CV error of spectrum_'s terms where stage 6 or 7 chose them
            if self.repeats_ > 1:
                self._average_repeats(X, y)
                if self._wants_regrow():
                    with _timed(self.timings_, "regrow"):
                        error = self._regrow(X, y)
                    if error is not None and self._wants_guide():
                        with _timed(self.timings_, "guide"):
                            error = self._guide(X, y, error)
            # the CV error of spectrum_'s terms; None: an average of repeats that no stage chose again
            spectrum_error = self._first_cv_error if self.repeats_ == 1 else error
            if self._wants_extend():
                with _timed(self.timings_, "extend"):
                    extended = self._extend(X, y, self._first_cv_error if error is None else error)
                spectrum_error = spectrum_error if extended is None else extended
            self.spectrum_cv_r2_ = self._explained_by(spectrum_error, y)
        self._add_offset(offset)
        return self

    def _explained_by(self, error: float | None, y: np.ndarray) -> float:
        """1 - a CV mean squared ``error`` of the scaled outputs / their variance (``y``
        before scaling): NaN where no CV scored the terms (``error`` None or infinite)."""
        if error is None or not np.isfinite(error):
            return np.nan
        if np.all(y == y[0]):  # constant outputs: fitted exactly, without a scale
            return 1.0 if error == 0.0 else -np.inf
        return 1.0 - error / float(np.var(y / self._output_scale))  # the scaled outputs' variance

    def _fit(self, X, y) -> ProxySPEX:
        """The paper's four stages (module docstring), on checked inputs scaled to ``max |y| < 1``.

        Trees of unlimited depth can grow so deep that their exact spectrum would expand to
        more than :data:`MAX_TREE_TERMS` raw terms (on a few thousand masks concentrated at
        extreme sizes, for one); the search then runs again on the grid without them, and
        ``timings_`` counts the CPU seconds of both attempts."""
        self.check_params()
        X, y = self._check_inputs(X, y)
        grid = self._search_grid(len(y))
        timings: dict[str, float] = {}
        try:
            return self._fit_on(X, y, grid, timings)
        except TreesTooDeep as error:
            bounded = without_depth(grid, None)
            if None not in grid["max_depth"] or bounded is None:
                raise
            warnings.warn(f"{error} Searched again without unlimited depth.", UserWarning, stacklevel=3)
            return self._fit_on(X, y, bounded, timings)

    def _fit_on(self, X: np.ndarray, y: np.ndarray, grid: dict, timings: dict[str, float]) -> ProxySPEX:
        """:meth:`_fit` with the search on ``grid``, adding each stage's CPU seconds to
        ``timings`` (which becomes ``timings_``)."""
        n = self.n_features_in_ = X.shape[1]
        self.search_grid_ = grid
        if np.all(y == y[0]):
            return self._fit_constant(n, float(y[0]))
        _check_masks_vary(X)
        scale = self._output_scale = output_scale(y)
        y = y / scale  # exact: a power of two (see Notes)
        folds = list(KFold(self.cv, shuffle=True, random_state=self.seed).split(X))
        data = mask_dataset(X, y, self.num_threads)

        spectrum_of = cache(partial(self._tree_spectrum, n=n))
        fold_errors: dict = {}  # the settle check's first fold, not scored twice
        self.challenge_ = pd.DataFrame()

        @cache  # the first fold's table serves the settle check and, when it settled, sparsify
        def sparsity_table(fits: tuple[Fit, ...], ks: tuple[int, ...], tilts: tuple, rankings: tuple) -> pd.DataFrame:
            """The sparsity CV (:func:`sparsity_cv`) of the fits on the first ``len(fits)`` folds."""
            spectra = [spectrum_of(f.model) for f in fits]
            options = (self.max_cv_rows, self.seed, self._ridges(), tilts, rankings, fold_errors)
            return sparsity_cv(X, y, folds[: len(fits)], spectra, list(fits), list(ks), *options)

        with _timed(timings, "search"):  # 1. search: the trees' hyper-parameters by CV (race)
            config, fits, self.cv_results_ = search(
                data,
                y,
                folds,
                self.search_grid_,
                race=self.search == "race",
                num_threads=self.num_threads,
                seed=self.seed,
                settled=None if self.all_folds is True else partial(self._settled, sparsity_table, y, folds[0]),
                challenge=partial(self._challenged, sparsity_table, y, folds[0]) if self._challenges(len(y)) else None,
            )
        fitted = folds[: len(fits)]  # the folds fitted: only the first when it settled the search
        with _timed(timings, "extract"):  # 2. extract: each fold ensemble's exact spectrum, averaged
            self.tree_spectrum_ = Spectrum.mean([spectrum_of(f.model) for f in fits])
            self.tree_models_ = [(1.0 / len(fits), f.model) for f in fits]
        with _timed(timings, "sparsify"):  # 3. sparsify: top-k (and the refit's ridge) by CV
            keep, ridge = self._sparsify(X, y, fitted, fits, sparsity_table)
        self.cv_r2_ = self._cv_r2(y)
        trees = int(round(np.mean([f.best_iteration for f in fits])))
        self.best_params_: dict | None = {
            "max_depth": config.max_depth,
            "learning_rate": config.learning_rate,
            "n_estimators": trees,
        }
        if self._wants_final_fit():  # the winner on every mask joins the folds' average
            final_trees = int(round(trees * len(X) / np.mean([len(tr) for tr, _ in fitted])))
            self._add_final_fit(data, config, final_trees, timings)
            self.best_params_["final_trees"] = final_trees
        with _timed(timings, "sparsify"):  # 4. refit
            kept = keep(self.tree_spectrum_)
            self.spectrum_ = kept if np.isnan(ridge) else least_squares(kept, X, y, ridge)
            self.k_, self.refit_, self.ridge_ = len(kept), not np.isnan(ridge), ridge
            self.spectrum_ridge_ = ridge
        self.grown_, self.grow_cv_ = False, pd.DataFrame()
        if self._wants_grow() and len(fitted) > 1:
            with _timed(timings, "grow"):  # 5. grow: the kept terms' hierarchy, one order up
                self._grow(X, y, fitted, [spectrum_of(f.model) for f in fits], keep, kept)
        # the lowest CV error of the terms kept (stage 8 compares with it), in the scaled units
        self._first_cv_error: float = _lowest_error(self._choices, self.grow_cv_)
        self._scale_back(scale)
        self.timings_: dict[str, float] = timings
        return self

    def _wanted_repeats(self, m: int) -> int:
        """How many fits to average on ``m`` masks: ``repeats``, or ("auto") :data:`REPEATS`
        while the first fit's CV explains at least :data:`EXPLAINS_ABOVE` of the variance with
        k="cv" and less than :data:`REPEAT_BELOW` (on fewer than :data:`REPEAT_MASKS` masks,
        less than :data:`FINAL_FIT_BELOW`), else one (and one for constant outputs, whose
        answer is exact)."""
        if self.best_params_ is None:
            return 1
        if self.repeats != "auto":
            return int(self.repeats)
        if not self._repeats_decided_here():  # the sparsity asked for stays as asked
            return 1
        below = FINAL_FIT_BELOW if m < REPEAT_MASKS else REPEAT_BELOW
        return REPEATS if EXPLAINS_ABOVE <= self.cv_r2_ < below else 1

    def _repeats_decided_here(self) -> bool:
        """Whether ``repeats="auto"`` decides how many fits there are: with k="cv" (no
        ``energy``) on outputs that are not constant."""
        return self.repeats == "auto" and self.k == "cv" and self.energy is None and self.best_params_ is not None

    def _wants_second_opinion(self, m: int) -> bool:
        """Whether to fit again with the next seed (:meth:`_second_opinion`): with
        ``repeats="auto"`` and k="cv", when the fit's CV explains less than
        :data:`EXPLAINS_ABOVE` of the variance on fewer than :data:`REPEAT_MASKS` masks."""
        return self._repeats_decided_here() and m < REPEAT_MASKS and self.cv_r2_ < EXPLAINS_ABOVE

    def _second_opinion(self, X, y) -> None:
        """Fit with seed ``seed + 1`` and keep that fit instead (``seed_``) when its CV explains
        at least :data:`EXPLAINS_ABOVE` of the variance; the CPU seconds of both join
        ``timings_``. On a few hundred masks, a weak function's first fold can find nothing
        by the luck of its split (at n = 100, α = 1, one complete hierarchy in ten)."""
        second = self._fitted_again(X, y, self.seed + 1)
        if second.cv_r2_ >= EXPLAINS_ABOVE:
            fitted = {name: value for name, value in vars(second).items() if name.endswith("_")}
            del fitted["timings_"]  # both fits' seconds, counted by _fitted_again
            kept = {"_output_scale": second._output_scale, "_first_cv_error": second._first_cv_error}
            self.__dict__.update(fitted, **kept, seed_=second.seed)

    def _average_repeats(self, X, y) -> None:
        """Fit ``repeats_ - 1`` more times with seeds ``seed_ + 1, ...`` (on the grid without
        the first fit's depth with ``vary_depth``, :meth:`_other_depths`) and average the
        final spectra into ``spectrum_``; their CPU seconds join ``timings_``."""
        grid = self._other_depths() if self.vary_depth else self.grid
        others = [self._fitted_again(X, y, self.seed_ + r, grid) for r in range(1, self.repeats_)]
        self.spectrum_ = Spectrum.mean([self.spectrum_, *(other.spectrum_ for other in others)])
        self.spectrum_ridge_ = np.nan  # each fit refitted its own terms

    def _other_depths(self) -> dict | None:
        """The ``grid`` without the tree depth of this fit (``best_params_``), or the grid
        itself when that depth is its only one."""
        assert self.best_params_ is not None  # repeats follow a search, never constant outputs
        others = without_depth(self.search_grid_, self.best_params_["max_depth"])
        return self.search_grid_ if others is None else others

    def _search_grid(self, m: int) -> dict:
        """The grid the search runs on over ``m`` masks: :data:`PAPER_GRID` with ``grid``'s
        entries in place of its own; without ``grid``, on fewer than :data:`REPEAT_MASKS` masks,
        with the learning rates :data:`SMALL_BUDGET_RATES`."""
        if self.grid is None and m < REPEAT_MASKS:
            return {**PAPER_GRID, "learning_rate": SMALL_BUDGET_RATES}
        return {**PAPER_GRID, **(self.grid or {})}

    def _fitted_again(self, X, y, seed: int, grid: dict | None = None) -> ProxySPEX:
        """One more fit of these settings (``repeats=1``) seeded ``seed``, on ``grid`` if given
        (else this fit's); its CPU seconds per stage join ``timings_``."""
        other = clone(self).set_params(repeats=1, seed=seed, grid=self.grid if grid is None else grid)._fit(X, y)
        for stage, seconds in other.timings_.items():
            self.timings_[stage] = self.timings_.get(stage, 0.0) + seconds
        return other

    def _wants_grow(self) -> bool:
        """Whether to grow the kept terms' hierarchy (:meth:`_grow`): with k="cv", always
        (True), never (False), or while the fit's CV explains at least ``grow`` (a float) or
        ("auto") :data:`EXPLAINS_ABOVE` and less than :data:`FINAL_FIT_BELOW` of the variance: a
        fit that explains nothing has no hierarchy to grow, and above, there is little left
        to grow."""
        if self.grow is False or self.best_params_ is None or self._terms_asked():
            return False
        return self._explains_enough(self.grow, EXPLAINS_ABOVE, FINAL_FIT_BELOW)

    def _terms_asked(self) -> bool:
        """Whether the kept terms are as asked (a fixed k, ``energy`` or refit=False), which
        neither growth changes."""
        return self.k != "cv" or self.energy is not None or self.refit is False

    def _grow(self, X, y, folds, fold_spectra: list[Spectrum], keep: Callable, kept: Spectrum) -> None:
        """Stage 5: grow the kept terms' hierarchy by one order, after adding the trees' terms
        their residual correlates with most (:meth:`_pursued`), and choose the terms again
        (:func:`grown_pool`, :func:`grown_cv`), at the ridge strength of the best refitted
        candidate (:meth:`_refit_ridge`: the refit's own, or where the trees' coefficients were
        kept, the one a refit would have had; a pool of hundreds of terms on as few masks
        needs the ridge). Each fold grows the terms its own ensemble and training masks keep
        (the CV's subset of at most ``max_cv_rows``), so its CV error compares with the
        sparsity CV's; the grown terms replace ``spectrum_`` (``grown_``) when it is lower."""
        ks = self._candidate_ks(min(len(train) for train, _ in folds))
        ridges = (self._refit_ridge(),)
        subset = cv_subset(len(X), self.max_cv_rows, self.seed)  # the masks the CVs fit on
        pools = []
        for spectrum, (train, _) in zip(fold_spectra, folds):
            train = np.intersect1d(train, subset)
            X_train, y_train = X[train], y[train]
            kept_here = _on_masks(keep, X_train, y_train)(spectrum)
            pursued = self._pursued(kept_here, spectrum, X_train, y_train, ks, ridges)
            pools.append(grown_pool(pursued, max(ks), *self._growth()))
        options = (self.max_cv_rows, self.seed, self._grown_rankings())
        table = self.grow_cv_ = grown_cv(X, y, folds, pools, ks, ridges, *options)
        best = table.loc[table["cv_mse"].idxmin()]
        # both CVs factor in float32 (they only choose): a gain below its resolution is a tie
        if not best["cv_mse"] < (1.0 - 1e-5) * self._choices["cv_mse"].min():  # the kept terms' error
            return
        pursued = self._pursued(kept, self.tree_spectrum_, X, y, ks, ridges)
        pool = grown_pool(pursued, max(ks), *self._growth())
        self.spectrum_ = self._chosen_from_pool(pool, best, X, y, ridges[0])
        self.grown_, self.spectrum_ridge_ = True, float(best["ridge"])

    def _wants_regrow(self) -> bool:
        """Whether to regrow the repeats' average (:meth:`_regrow`): with several repeats,
        always (True), never (False), or when the first fit's CV explains at least ``regrow``
        (a float) or ("auto") :data:`REGROW_ABOVE` and less than :data:`REPEAT_BELOW` of the
        variance; never with terms kept as asked (a fixed k, ``energy`` or refit=False)."""
        if self.regrow is False or self.repeats_ < 2 or self._terms_asked():
            return False
        return self._explains_enough(self.regrow, REGROW_ABOVE, REPEAT_BELOW)

    def _explains_enough(self, setting, auto_above: float, below: float) -> bool:
        """Whether a ``grow`` or ``regrow`` setting other than False lets this fit go on: True
        always; a float or "auto" (``auto_above``) while the CV explains at least that and
        less than ``below`` of the variance (``cv_r2_``)."""
        if setting is True:
            return True
        above = auto_above if setting == "auto" else setting
        return above <= self.cv_r2_ < below

    def _regrow(self, X: np.ndarray, y: np.ndarray) -> float | None:
        """Stage 6, up to ``regrow_rounds`` rounds: the repeats' average ``spectrum_`` grown
        by one order (:func:`grown_pool`), its terms chosen again by CV over the folds of
        ``seed_`` (:func:`grown_cv`: k, ranking and ridge) and refitted on every mask
        (``regrown_``, ``regrow_cv_``), on the outputs scaled as in :meth:`_fit` (see
        Notes); each further round grows the last one's terms by one more order. Where the
        CV chooses the largest k it may (the cap binds), the rounds end and the spectrum
        stays as it was, unless it is the first round and its CV error is below
        ``regrow_capped`` times the first fit's (:meth:`_capped_choice`): then its terms are
        taken at half the cap, and the rounds go on. Returns the CV error of the terms taken
        last (in the scaled outputs' units), or None where no round was taken."""
        scale = self._output_scale
        y = y / scale  # exact: a power of two
        folds, limit, ks, cv = self._chosen_again_by(X, y)
        tables, error = [], None
        for round_ in range(1, self.regrow_rounds + 1):
            pool = grown_pool(self.spectrum_, limit, *self._growth())
            table = cv([pool] * len(folds))
            tables.append(table.assign(round=round_))
            best = table.loc[table["cv_mse"].idxmin()]
            if best["k"] == max(ks):  # the CV wants more terms than it can judge
                best = self._capped_choice(table, round_, float(np.var(y)))
                if best is None:
                    break
            self.spectrum_ = self._chosen_from_pool(pool, best, X, y, self._ridges()[0]).scaled(scale)
            self.regrown_, self.regrow_rounds_, error = True, round_, float(best["cv_mse"])
            self.spectrum_ridge_ = float(best["ridge"])
        self.regrow_cv_ = scale_errors(pd.concat(tables, ignore_index=True), ("cv_mse",), scale)
        return error

    def _wants_guide(self) -> bool:
        """Whether stage 7 follows a regrow that was taken: with ``guide_rounds`` above 0 and
        terms of order :data:`GUIDE_FROM_ORDER` allowed (``max_order``), for the guided trees'
        outputs to leave out."""
        return self.guide_rounds > 0 and (self.max_order is None or self.max_order >= GUIDE_FROM_ORDER)

    def _guide(self, X: np.ndarray, y: np.ndarray, error: float) -> float:
        """Stage 7, up to ``guide_rounds`` rounds after a regrow whose terms' CV error was
        ``error`` (scaled outputs' units): trees fitted to the outputs less ``spectrum_``'s
        terms of order :data:`GUIDE_FROM_ORDER` and above (:meth:`_guided_trees`, one ensemble
        per fold of ``seed_``), their largest terms pooled with the spectrum's and grown
        (:meth:`_guided_pool`), the terms chosen again by CV (:func:`grown_cv`) and refitted
        on every mask while the CV error falls (``guide_rounds_``, ``guide_cv_``). Returns the
        CV error of the terms taken last (``error`` where no round was taken)."""
        scale = self._output_scale
        y = y / scale  # exact: a power of two
        folds, limit, _, cv = self._chosen_again_by(X, y)
        tables = []
        for round_ in range(1, self.guide_rounds + 1):
            current = self.spectrum_.scaled(1.0 / scale)
            target = y - current.predict(X) + current.restrict_order(GUIDE_FROM_ORDER - 1).predict(X)
            fold_trees = [self._guided_trees(X[train], target[train]) for train, _ in folds]
            table = cv([self._guided_pool(current, trees, limit) for trees in fold_trees])
            tables.append(table.assign(round=round_))
            best = table.loc[table["cv_mse"].idxmin()]
            if not best["cv_mse"] < error:
                break
            pool = self._guided_pool(current, Spectrum.mean(fold_trees), limit)
            self.spectrum_ = self._chosen_from_pool(pool, best, X, y, self._ridges()[0]).scaled(scale)
            self.guide_rounds_, error = round_, float(best["cv_mse"])
            self.spectrum_ridge_ = float(best["ridge"])
        self.guide_cv_ = scale_errors(pd.concat(tables, ignore_index=True), ("cv_mse",), scale)
        return error

    def _wants_extend(self) -> bool:
        """Whether stage 8 runs: with ``extend_rounds`` above 0 and k="cv" (terms not kept as
        asked), while the first fit's CV explains at least :data:`EXPLAINS_ABOVE` and less
        than :data:`FINAL_FIT_BELOW` of the variance."""
        if self.extend_rounds == 0 or self.best_params_ is None or self._terms_asked():
            return False
        return EXPLAINS_ABOVE <= self.cv_r2_ < FINAL_FIT_BELOW

    def _extend(self, X: np.ndarray, y: np.ndarray, error: float) -> float | None:
        """Stage 8: ``spectrum_``'s terms extended by one feature at a time, led by their
        residual (:func:`extension_cv` over the folds of ``seed_`` and the CV's subset of at
        most ``max_cv_rows`` masks, then :func:`extended` on every mask), where the CV error
        of the rounds and ridge strength it chooses is below ``error`` (that of the terms as
        they are, in the scaled outputs' units) and below their refit's (0 rounds). Each
        round adds :data:`EXTEND_SHARE` of a fold's training masks in sets, up to
        ``extend_rounds`` rounds and at most half a fold's training masks (or ``max_k``) in
        terms; the rounds end after :data:`EXTEND_PATIENCE` without a lower CV error
        (``extend_rounds_``, ``extend_cv_``). Returns the CV error of the extended terms (in
        the scaled outputs' units), or None where no round was taken."""
        scale = self._output_scale
        y = y / scale  # exact: a power of two
        subset = cv_subset(len(X), self.max_cv_rows, self.seed)
        folds = [
            (np.intersect1d(train, subset), np.intersect1d(valid, subset))
            for train, valid in KFold(self.cv, shuffle=True, random_state=self.seed_).split(X)
        ]
        m_train = min(len(train) for train, _ in folds)
        add = max(1, int(np.ceil(EXTEND_SHARE * m_train)))
        rows = csr_to_padded(self.spectrum_.supports, self.n_features_in_)
        max_terms = min(m_train // 2, self.max_k)
        if len(rows) + add > max_terms:  # no room for a round
            return None
        ridges = self._ridges()
        path_ridge = min(ridges)
        options = (self.extend_rounds, EXTEND_PATIENCE, self.max_order, max_terms)
        table = extension_cv(rows, X, y, folds, add, ridges, path_ridge, *options)
        self.extend_cv_ = scale_errors(table.copy(), ("cv_mse",), scale)
        best = table.loc[table["cv_mse"].idxmin()]
        if best["rounds"] == 0 or not best["cv_mse"] < (1.0 - 1e-5) * error:  # float32 CV: a tie below it
            return None
        rounds = int(best["rounds"])
        spectrum = extended(rows, X, y, add, rounds, path_ridge, float(best["ridge"]), self.max_order)
        self.spectrum_, self.extend_rounds_ = spectrum.scaled(scale), rounds
        self.spectrum_ridge_ = float(best["ridge"])
        return float(best["cv_mse"])

    def _chosen_again_by(self, X: np.ndarray, y: np.ndarray) -> tuple[list, int, list[int], Callable]:
        """The CV by which stages 6 and 7 choose terms again on masks ``X`` and (scaled)
        outputs ``y``: the folds of ``seed_``, the most terms a pool holds (the largest k of a
        fold's training masks), the k chosen from (at most a quarter of a fold's training
        masks: module docstring), and the CV of one pool per fold (:func:`grown_cv` at every
        ridge strength, ranked by the refit and, where ``ranking`` allows, closed)."""
        folds = list(KFold(self.cv, shuffle=True, random_state=self.seed_).split(X))
        m_train = min(len(train) for train, _ in folds)
        ks = self._candidate_ks(m_train // 2)
        rankings, ridges = self._grown_rankings(), self._ridges()
        cv = partial(
            grown_cv, X, y, folds, ks=ks, ridges=ridges, max_rows=self.max_cv_rows, seed=self.seed, rankings=rankings
        )
        return folds, max(self._candidate_ks(m_train)), ks, cv

    def _grown_rankings(self) -> tuple[str, ...]:
        """How the grown terms of stages 5–7 are ranked: they have no trees' coefficients, so
        by their refit, and closed under subsets where ``ranking`` allows "closure"."""
        return ("refit", "closure") if "closure" in self._rankings() else ("refit",)

    def _growth(self) -> tuple[int | None, bool, int]:
        """:func:`grown_pool`'s settings of stages 5–7: ``max_order``, ``cliques`` and
        ``missing_subsets``."""
        return self.max_order, self.cliques, self.missing_subsets

    def _guided_trees(self, X: np.ndarray, target: np.ndarray) -> Spectrum:
        """The exact spectrum of one LightGBM ensemble with the first fit's depth, learning
        rate and tree count (``best_params_``), fitted to ``target`` (m,) on masks ``X`` (m, n)."""
        assert self.best_params_ is not None  # stage 7 follows a search
        params = self.best_params_
        config = Config(params["max_depth"], params["learning_rate"])
        data = mask_dataset(X, target, self.num_threads)
        model = fit_all(data, config, params["n_estimators"], self.num_threads, self.seed_)
        return self._tree_spectrum(model, self.n_features_in_)

    def _tree_spectrum(self, model: str, n: int) -> Spectrum:
        """The exact spectrum of the LightGBM model text ``model`` over ``n`` features (above
        ``max_order`` dropped), refused beyond :data:`MAX_TREE_TERMS` raw terms."""
        return Spectrum.from_trees(model, n, max_order=self.max_order, max_terms=MAX_TREE_TERMS)

    def _guided_pool(self, current: Spectrum, trees: Spectrum, limit: int) -> np.ndarray:
        """The padded supports to choose from (:func:`grown_pool`, at most ``limit``): the
        terms of ``current`` with as many of the largest of ``trees``, ranked by their mean."""
        joined = Spectrum.mean([current, top_terms(trees, len(current))])
        return grown_pool(joined, limit, *self._growth())

    def _capped_choice(self, table: pd.DataFrame, round_: int, variance: float) -> pd.Series | None:
        """The row of a regrow round's CV ``table`` to take where its best k is the cap: in
        the first round, the best row of k at most half the cap, when its CV error is below
        ``regrow_capped`` times the first fit's (``1 - cv_r2_`` of the outputs' ``variance``,
        in the table's units); else None (the round is not taken). The pool has seen every
        mask, so the CV flatters it the more, the more terms it keeps; where the regrown
        terms taken still cut the first fit's error by more than a third, they hold a
        hierarchy the average misses (:data:`REGROW_CAPPED_BELOW`)."""
        first_error = (1.0 - self.cv_r2_) * variance
        below = table[table["k"] <= table["k"].max() // 2]
        if round_ > 1 or not len(below) or not below["cv_mse"].min() < self.regrow_capped * first_error:
            return None
        return below.loc[below["cv_mse"].idxmin()]

    def _chosen_from_pool(self, pool: np.ndarray, best: pd.Series, X, y, rank_ridge: float) -> Spectrum:
        """The terms of the padded supports ``pool`` (K, D) that a row ``best`` of
        :func:`grown_cv` chose (``k``, ``ranking``, ``ridge``), refitted on masks ``X`` and
        outputs ``y``: the closure of the top k re-ranked at ``rank_ridge``, or the top k of
        the pool's refit refitted alone, as the CV scored them."""
        pooled = Spectrum(self.n_features_in_, padded_to_csr(pool, self.n_features_in_), np.ones(len(pool)))
        k = min(int(best["k"]), len(pool))
        chosen = {"k": k, "tilt": 1.0, "pool": len(pool), "X": X, "y": y, "ridge": float(best["ridge"])}
        if best["ranking"] == "closure":
            return closed_terms(pooled, **chosen, rank_ridge=rank_ridge)
        return least_squares(refit_ranked_terms(pooled, **chosen), X, y, chosen["ridge"])

    def _refit_ridge(self) -> float:
        """The ridge strength of the refitted candidate of lowest CV error (``sparsity_cv_``):
        the grown terms are refitted even where the trees' coefficients were kept."""
        refitted = self.sparsity_cv_[self.sparsity_cv_["refit"]]
        return float(refitted.loc[refitted["cv_mse"].idxmin(), "ridge"])

    def _pursued(self, kept: Spectrum, trees: Spectrum, X, y, ks, ridges) -> Spectrum:
        """``kept`` with the trees' terms its residual correlates with most (:func:`pursued_terms`:
        :data:`PURSUE_ROUNDS` rounds of :data:`PURSUE_SHARE` ``× len(kept)`` terms, from the
        trees' :data:`PURSUE_POOL` ``× max(ks)`` largest), or ``kept`` itself without ``pursue``."""
        if not self.pursue:
            return kept
        add = max(1, int(len(kept) * PURSUE_SHARE))
        return pursued_terms(kept, trees, X, y, add, PURSUE_ROUNDS, PURSUE_POOL * max(ks), ridges[0])

    def predict(self, X) -> np.ndarray:
        """Evaluate the fitted sparse spectrum on masks ``X`` (m, n); returns (m,)."""
        check_is_fitted(self, "spectrum_")
        return self.spectrum_.predict(X)

    def predict_trees(self, X) -> np.ndarray:
        """The trees' own prediction on masks ``X`` (m, n); returns (m,).

        The weighted mean of the fold ensembles (and of the fit on every mask) as LightGBM
        evaluates them: equal to ``tree_spectrum_.predict(X)`` up to rounding (that spectrum
        is their exact Fourier transform; with ``max_order`` it drops the higher orders), at a
        cost that grows with the trees rather than with the spectrum's terms.
        """
        check_is_fitted(self, "tree_spectrum_")
        X = as_masks(X, self.n_features_in_).astype(np.float32)
        if not self.tree_models_:  # constant outputs: no trees were fitted
            return np.full(X.shape[0], self.tree_spectrum_.constant)  # offset included
        out = np.zeros(X.shape[0])
        for weight, text in self.tree_models_:
            trees = lgb.Booster(model_str=text)
            out += weight * np.asarray(trees.predict(X, num_threads=self.num_threads), dtype=np.float64)
        return out * self._output_scale + self._output_offset

    def check_params(self) -> None:
        """Raise ValueError for a parameter out of its range (``fit`` calls it first; the
        entry points call it before any model query)."""
        if self.search not in ("race", "full"):
            raise ValueError(f"search must be 'race' or 'full', got {self.search!r}.")
        if not (self.k in ("cv", None) or (is_int(self.k) and self.k > 0)):
            raise ValueError(f"k must be 'cv', None or a positive int, got {self.k!r}.")
        if not (isinstance(self.refit, bool) or self.refit == "auto"):
            raise ValueError(f"refit must be 'auto', True or False, got {self.refit!r}.")
        if self.k is None and self.energy is None and self.refit is True:
            raise ValueError(
                "k=None keeps every tree term with the trees' coefficients; refit=True needs a k or energy."
            )
        check_int(self.cv, "cv", 2)
        check_int(self.max_k, "max_k", 1)
        check_int(self.max_cv_rows, "max_cv_rows", self.min_masks)
        check_int(self.num_threads, "num_threads", 1)
        check_int(self.seed, "seed", 0)
        if self.max_order is not None:
            check_int(self.max_order, "max_order", 1)
        _check_grid(self.grid)
        if isinstance(self.final_fit, float) and not isinstance(self.final_fit, bool):
            valid = 0.0 < self.final_fit <= 1.0
        else:
            valid = isinstance(self.final_fit, bool) or self.final_fit == "auto"
        if not valid:
            raise ValueError(f"final_fit must be 'auto', True, False or a float in (0, 1], got {self.final_fit!r}.")
        check_auto_or_int(self.repeats, "repeats", 1)
        for name in ("grow", "regrow"):
            value = getattr(self, name)
            fraction = isinstance(value, float) and 0.0 <= value < 1.0
            if not (value == "auto" or isinstance(value, bool) or fraction):
                raise ValueError(f"{name} must be 'auto', True, False or a float in [0, 1), got {value!r}.")
        check_int(self.regrow_rounds, "regrow_rounds", 1)
        check_int(self.guide_rounds, "guide_rounds", 0)
        check_int(self.extend_rounds, "extend_rounds", 0)
        capped = self.regrow_capped
        if not (is_real(capped) and 0.0 <= capped <= 1.0):
            raise ValueError(f"regrow_capped must be a float in [0, 1], got {capped!r}.")
        for name in ("challenge", "vary_depth", "pursue", "cliques"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")
        check_int(self.missing_subsets, "missing_subsets", 0, 1)
        if self.all_folds not in ("auto", True):
            raise ValueError(f"all_folds must be 'auto' or True, got {self.all_folds!r}.")
        if isinstance(self.ridge, str) and self.ridge != "cv":
            raise ValueError(f"ridge must be 'cv', a float or a sequence of floats, got {self.ridge!r}.")
        if not isinstance(self.ridge, str):
            given = np.atleast_1d(np.asarray(self.ridge, dtype=object))
            if not (given.ndim == 1 and given.size > 0 and all(is_real(r) and 0 <= r < np.inf for r in given)):
                raise ValueError(f"ridge strengths must be finite numbers >= 0 (at least one), got {self.ridge!r}.")
        if not (self.tilt == "cv" or (is_real(self.tilt) and 0.0 < self.tilt < np.inf)):
            raise ValueError(f"tilt must be 'cv' or a positive float, got {self.tilt!r}.")
        rankings = self._rankings()
        if not (rankings and all(isinstance(r, str) and r in RANKINGS for r in rankings)):
            raise ValueError(f"ranking must be 'cv', one of {RANKINGS} or a sequence of them, got {self.ranking!r}.")
        if self.refit is False and set(rankings) <= {"refit", "closure"}:
            raise ValueError(f"ranking={self.ranking!r} keeps refitted terms: it needs refit='auto' or True.")
        if self.energy is not None and not (is_real(self.energy) and 0.0 < self.energy <= 1.0):
            raise ValueError(f"energy must lie in (0, 1], got {self.energy!r}.")

    # ------------------------------------------------------------------ helpers of _fit
    def _check_inputs(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """``X`` and ``y`` checked and converted, and enough masks for the CV, or ValueError."""
        X = as_masks(X)
        y = as_outputs(y, X.shape[0])
        m, n = X.shape
        needed = self.min_masks
        if m < needed:
            raise ValueError(
                f"ProxySPEX needs at least {needed} masks for {self.cv}-fold cross-validation, "
                f"got {m}. Query at least max({needed}, compattr.budget(n={n}, alpha=4)) = "
                f"{max(needed, budget(max(n, 2), 4.0))} masks."
            )
        return X, y

    def _fit_constant(self, n: int, value: float) -> ProxySPEX:
        """The exact answer for constant outputs: a spectrum holding only ``value``."""
        warnings.warn(
            f"every output equals {value!r}: the spectrum is that constant alone, with no "
            "interactions (check that the value function responds to the masks).",
            stacklevel=4,
        )
        self.spectrum_ = self.tree_spectrum_ = Spectrum(n, [()], [value])
        self.tree_models_, self._output_scale = [], 1.0
        self.best_params_ = None
        self.k_, self.refit_, self.ridge_, self.tilt_, self.ranking_ = len(self.spectrum_), False, np.nan, 1.0, "trees"
        self.spectrum_ridge_ = np.nan
        self.cv_results_, self.sparsity_cv_, self.challenge_ = pd.DataFrame(), pd.DataFrame(), pd.DataFrame()
        self.cv_r2_ = 1.0
        self.grown_, self.grow_cv_ = False, pd.DataFrame()
        self._first_cv_error = 0.0  # exact
        self.timings_ = {"search": 0.0, "extract": 0.0, "sparsify": 0.0}
        return self

    def _sparsify(
        self, X, y, folds, fits: list[Fit], sparsity_table: Callable[..., pd.DataFrame]
    ) -> tuple[Callable[[Spectrum], Spectrum], float]:
        """The rule that keeps terms of a tree spectrum, and the ridge strength of their refit
        (NaN: no refit), by the settings ``energy``, ``k``, ``refit``, ``ridge``, ``tilt`` and
        ``ranking``; what they leave open (k="cv", refit="auto", several ridges, tilts or
        rankings) is chosen by CV (``sparsity_cv_``, read from ``sparsity_table(fits, ks,
        tilts, rankings)``)."""
        self.sparsity_cv_ = pd.DataFrame()
        # the rows of sparsity_cv_ the rule was chosen among (their lowest error is the kept
        # terms'; the table also scores rules that could not be chosen, e.g. every tree term)
        self._choices = pd.DataFrame()
        self.tilt_ = 1.0 if self.tilt == "cv" else float(self.tilt)  # k="cv" may choose another
        self.ranking_ = "trees"  # k="cv" may choose another
        if self.k == "cv" and self.energy is None:
            return self._chosen_rule(X, y, folds, fits, sparsity_table)
        if self.energy is None and self.k is None:
            return _every_term, np.nan
        keep: Callable[[Spectrum], Spectrum]
        if self.energy is not None:
            keep = partial(Spectrum.top_energy, fraction=self.energy)
        else:
            keep = partial(top_terms, k=int(self.k), tilt=self.tilt_)
        ridges = self._ridges()
        if self.refit is False or (self.refit is True and len(ridges) == 1):
            return keep, ridges[0] if self.refit is True else np.nan
        # a fixed rule: the CV chooses the ridge of its refit and ("auto") whether to refit
        table = self.sparsity_cv_ = sparsity_table(
            tuple(fits), (len(keep(self.tree_spectrum_)),), (self.tilt_,), ("trees",)
        )
        allowed = (False, True) if self.refit == "auto" else (True,)
        choices = self._choices = table[table["refit"].isin(allowed) & (table["k"] > 0)]
        best = choices.loc[choices["cv_mse"].idxmin()]
        return keep, float(best["ridge"]) if best["refit"] else np.nan

    def _chosen_rule(
        self, X, y, folds, fits: list[Fit], sparsity_table: Callable[..., pd.DataFrame]
    ) -> tuple[Callable[[Spectrum], Spectrum], float]:
        """With k="cv": the k, tilt, ranking, refit and ridge of lowest CV error (setting
        ``sparsity_cv_``, ``tilt_`` and ``ranking_``), as the rule that keeps those terms of a
        tree spectrum, and the ridge strength of their refit (NaN: no refit)."""
        ks, rankings = self._candidate_ks(min(len(tr) for tr, _ in folds)), self._rankings()
        table = self.sparsity_cv_ = sparsity_table(tuple(fits), tuple(ks), self._tilts(), rankings)
        allowed = (False, True) if self.refit == "auto" else (self.refit,)
        choices = self._choices = table[table["refit"].isin(allowed) & table["ranking"].isin(rankings)]
        best = choices.loc[choices["cv_mse"].idxmin()]
        ridge, k = float(best["ridge"]), int(best["k"])
        self.tilt_, self.ranking_ = float(best["tilt"]), str(best["ranking"])
        if k == 0:
            return _every_term, ridge
        reranked = {"k": k, "tilt": self.tilt_, "pool": max(ks), "X": X, "y": y, "ridge": ridge}
        if self.ranking_ == "refit":
            return partial(refit_ranked_terms, **reranked), ridge
        if self.ranking_ == "closure":  # re-ranked at the first ridge strength, as the CV does
            return partial(closed_terms, **reranked, rank_ridge=self._ridges()[0]), ridge
        return partial(top_terms, k=k, tilt=self.tilt_), ridge

    def _settled(self, sparsity_table: Callable[..., pd.DataFrame], y: np.ndarray, fold, fit: Fit) -> bool:
        """Whether the race's winner ``fit`` on the first ``fold`` settles the search: the best
        top-k of its spectrum, refitted or not (``sparsity_table``), explains at least
        :data:`SETTLED_ABOVE` of the variance of the fold's held-out outputs."""
        table = sparsity_table((fit,), tuple(self._candidate_ks(len(fold[0]))), self._tilts(), self._rankings())
        return _explained(table, y[fold[1]]) >= SETTLED_ABOVE

    def _challenged(
        self, sparsity_table: Callable[..., pd.DataFrame], y: np.ndarray, fold, winner: Fit, rivals: list[Fit]
    ) -> Fit:
        """The fit the search goes on with (``challenge``): the race's ``winner`` on the first
        ``fold``, unless the best top-k of its spectrum explains at least :data:`EXPLAINS_ABOVE`
        and less than :data:`REPEAT_BELOW` of the variance of the fold's held-out outputs (a fit
        that ``repeats`` would repeat); then, of it and the best fit of each other depth
        (``rivals``), the one whose best top-k has the lowest error there (``sparsity_table``),
        recorded in ``challenge_``."""
        ks, tilts, rankings = tuple(self._candidate_ks(len(fold[0]))), self._tilts(), self._rankings()
        explained = _explained(sparsity_table((winner,), ks, tilts, rankings), y[fold[1]])
        if not EXPLAINS_ABOVE <= explained < REPEAT_BELOW:
            return winner
        fits = [winner, *rivals]
        errors = [float(sparsity_table((fit,), ks, tilts, rankings)["cv_mse"].min()) for fit in fits]
        chosen = int(np.argmin(errors))
        self.challenge_ = pd.DataFrame(
            {
                "max_depth": [fit.config.max_depth for fit in fits],
                "learning_rate": [fit.config.learning_rate for fit in fits],
                "best_iteration": [fit.best_iteration for fit in fits],
                "tree_mse": [fit.score for fit in fits],
                "spectrum_mse": errors,
                "chosen": np.arange(len(fits)) == chosen,
            }
        )
        return fits[chosen]

    def _challenges(self, m: int) -> bool:
        """Whether the race's winner may be challenged on ``m`` masks (``challenge``)."""
        return self.challenge and self.search == "race" and m >= REPEAT_MASKS

    def _candidate_ks(self, m_train: int) -> list[int]:
        """The k the CV chooses from, with ``m_train`` masks to fit each fold's refit on."""
        return candidate_ks(max(2, min(self.max_k, m_train // 2)))

    def _cv_r2(self, y: np.ndarray) -> float:
        """The CV's explained variance of ``y``: of the kept terms (the rule chosen), or of the
        trees when no rule was cross-validated."""
        return _explained(self._choices if len(self._choices) else self.cv_results_, y)

    def _wants_final_fit(self) -> bool:
        """Whether to add the fit on every mask: always (True), never (False), or when the
        cross-validated fit explains less than ``final_fit`` (a float) or ("auto")
        :data:`FINAL_FIT_BELOW` of the variance (``cv_r2_``); above it there is little left for
        the fit to add, and it costs about a fold."""
        if isinstance(self.final_fit, bool):
            return self.final_fit
        return self.cv_r2_ < (FINAL_FIT_BELOW if self.final_fit == "auto" else self.final_fit)

    def _add_final_fit(self, data, config, trees: int, timings: dict) -> None:
        """Fit ``config`` on every mask with ``trees`` trees and average its spectrum half and
        half with the folds' (``tree_spectrum_``, ``tree_models_``)."""
        with _timed(timings, "search"):
            model = fit_all(data, config, trees, self.num_threads, self.seed)
        with _timed(timings, "extract"):
            folds = self.tree_spectrum_
            final = self._tree_spectrum(model, folds.n)
            self.tree_spectrum_ = Spectrum.mean([folds, final])
            self.tree_models_ = [(w / 2, text) for w, text in self.tree_models_] + [(0.5, model)]

    def _tilts(self) -> tuple[float, ...]:
        """The ranking tilts to choose from."""
        return TILTS if self.tilt == "cv" else (float(self.tilt),)

    def _rankings(self) -> tuple[str, ...]:
        """The rankings to choose from."""
        if isinstance(self.ranking, (tuple, list)):
            return tuple(self.ranking)
        return RANKINGS if self.ranking == "cv" else (self.ranking,)

    def _ridges(self) -> tuple[float, ...]:
        """The ridge strengths to choose from."""
        if isinstance(self.ridge, str):
            return RIDGES
        return tuple(float(r) for r in np.atleast_1d(self.ridge))

    def _add_offset(self, offset: float) -> None:
        """Add back the ``offset`` :meth:`fit` took from the outputs: to the spectra's
        constant and (``_output_offset``) to :meth:`predict_trees`."""
        self._output_offset = offset
        if offset != 0.0:
            constant = Spectrum(self.n_features_in_, [()], [offset])
            self.spectrum_ = Spectrum.sum([self.spectrum_, constant])
            self.tree_spectrum_ = Spectrum.sum([self.tree_spectrum_, constant])

    def _scale_back(self, scale: float) -> None:
        """Undo the output scaling: spectra times ``scale``, CV errors times ``scale²``."""
        self.spectrum_ = self.spectrum_.scaled(scale)
        self.tree_spectrum_ = self.tree_spectrum_.scaled(scale)
        for table in (self.cv_results_, self.sparsity_cv_, self.grow_cv_):
            scale_errors(table, ("cv_mse",), scale)
        scale_errors(self.challenge_, ("tree_mse", "spectrum_mse"), scale)


def _explained(table: pd.DataFrame, y: np.ndarray) -> float:
    """1 - the lowest ``cv_mse`` of a CV table / the variance of the outputs ``y`` it scored.

    Constant ``y`` (a held-out fold of an accuracy over few questions can be) is explained
    (1.0) only when predicted without error, else not at all (-inf).
    """
    error, variance = float(table["cv_mse"].min()), float(np.var(y))
    if variance == 0.0:
        return 1.0 if error == 0.0 else -np.inf
    return 1.0 - error / variance


def _on_masks(keep: Callable[[Spectrum], Spectrum], X, y) -> Callable[[Spectrum], Spectrum]:
    """The rule ``keep`` with the masks and outputs it refits on (if any) replaced by ``X``, ``y``."""
    if isinstance(keep, partial) and "X" in keep.keywords:
        return partial(keep.func, *keep.args, **{**keep.keywords, "X": X, "y": y})
    return keep


def _every_term(spectrum: Spectrum) -> Spectrum:
    """The rule that keeps every term."""
    return spectrum


def _check_masks_vary(X: np.ndarray) -> None:
    """Raise ValueError when every mask is the same (the outputs then vary for no feature)."""
    if np.all(X[0] == X):
        raise ValueError(
            f"all {X.shape[0]} masks are the same but the outputs vary: the variation cannot be "
            "attributed to any feature. Fit on masks that differ, e.g. "
            "compattr.sample_masks(n, m)."
        )


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Add the CPU seconds the block takes to ``timings[stage]``, also when it raises."""
    clock = time.process_time()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.process_time() - clock


def _lowest_error(*tables: pd.DataFrame) -> float:
    """The lowest ``cv_mse`` of the non-empty ``tables`` (inf where all are empty)."""
    return float(min((table["cv_mse"].min() for table in tables if len(table)), default=np.inf))


def _check_grid(grid: dict | None) -> None:
    """ValueError unless ``grid`` is None or maps some of :data:`PAPER_GRID`'s keys to
    non-empty sequences of tree depths (positive ints or None), tree counts (positive
    ints) and learning rates (positive numbers)."""
    if grid is None:
        return
    valid = {
        "max_depth": lambda v: v is None or (is_int(v) and v >= 1),
        "n_estimators": lambda v: is_int(v) and v >= 1,
        "learning_rate": lambda v: is_real(v) and 0 < v < np.inf,
    }
    if not isinstance(grid, dict) or not set(grid) <= set(valid):
        raise ValueError(f"grid must be a dict with keys among {sorted(valid)}, got {grid!r}.")
    for key, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple, np.ndarray)) or not len(values):
            raise ValueError(f"grid[{key!r}] must be a non-empty sequence, got {values!r}.")
        if not all(valid[key](v) for v in values):
            raise ValueError(f"grid[{key!r}] holds a value that is not a valid {key}: {values!r}.")
