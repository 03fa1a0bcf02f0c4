"""The NPS maths of SPEC §2 against figures computed by hand."""

from fractions import Fraction

import pytest

from surveys.dashboard.nps import NpsFigures, change_between, round_half_away_from_zero


def figures(promoters: int, passives: int, detractors: int, min_responses: int = 30) -> NpsFigures:
    return NpsFigures(
        responses=promoters + passives + detractors,
        promoters=promoters,
        passives=passives,
        detractors=detractors,
        min_responses=min_responses,
    )


# --- no data, extremes -------------------------------------------------------


def test_it_has_no_score_without_responses():
    """n = 0: "not enough data" — no score, no interval, no shares, no error."""
    empty = figures(0, 0, 0)
    assert empty.has_data is False
    assert empty.is_small_sample is False
    assert empty.score is None
    assert empty.exact is None
    assert empty.standard_error is None
    assert empty.margin_of_error is None
    assert empty.interval is None
    assert empty.promoter_share is None
    assert empty.passive_share is None
    assert empty.detractor_share is None


def test_it_scores_all_promoters_100_with_no_margin():
    """P = n = 100: p = 1, d = 0, p + d − (p − d)² = 1 − 1 = 0, so the margin is 0."""
    nps = figures(100, 0, 0)
    assert nps.score == 100
    assert nps.standard_error == 0
    assert nps.margin_of_error == 0
    assert nps.interval == (100.0, 100.0)
    assert nps.promoter_share == 100
    assert nps.detractor_share == 0


def test_it_scores_all_detractors_minus_100():
    nps = figures(0, 0, 40)
    assert nps.score == -100
    assert nps.margin_of_error == 0
    assert nps.interval == (-100.0, -100.0)


def test_it_scores_all_passives_zero():
    nps = figures(0, 50, 0)
    assert nps.score == 0
    assert nps.margin_of_error == 0
    assert nps.passive_share == 100


# --- rounding half away from zero ---------------------------------------------


@pytest.mark.parametrize(
    ("promoters", "passives", "detractors", "expected"),
    [
        # 100·1/8 = 12.5: Python's round() would give 12 (banker's rounding).
        (1, 7, 0, 13),
        # 100·(−1)/8 = −12.5 → −13, not −12.
        (0, 7, 1, -13),
        # 100·3/8 = 37.5 → 38; −37.5 → −38.
        (3, 5, 0, 38),
        (0, 5, 3, -38),
        # 100·1/40 = 2.5 → 3 (round() gives 2).
        (1, 39, 0, 3),
        (0, 39, 1, -3),
        # 100·1/200 = 0.5 exactly → 1 (round() gives 0); −0.5 → −1.
        (101, 0, 99, 1),
        (99, 0, 101, -1),
        (1, 199, 0, 1),
        (0, 199, 1, -1),
        # Not ties: 100·1/3 = 33.33… → 33; 100·2/3 = 66.66… → 67.
        (1, 2, 0, 33),
        (2, 1, 0, 67),
        (0, 1, 2, -67),
    ],
)
def test_it_rounds_half_away_from_zero(promoters, passives, detractors, expected):
    assert figures(promoters, passives, detractors).score == expected


def test_round_half_away_from_zero_on_exact_halves():
    assert round_half_away_from_zero(Fraction(1, 2)) == 1
    assert round_half_away_from_zero(Fraction(-1, 2)) == -1
    assert round_half_away_from_zero(Fraction(25, 2)) == 13
    assert round_half_away_from_zero(Fraction(-25, 2)) == -13
    assert round_half_away_from_zero(Fraction(49, 100)) == 0
    assert round_half_away_from_zero(Fraction(-49, 100)) == 0
    assert round_half_away_from_zero(0) == 0
    assert round_half_away_from_zero(Fraction(201, 2)) == 101  # 100.5, not 100


def test_the_exact_score_is_kept_unrounded():
    assert figures(1, 7, 0).exact == Fraction(25, 2)


# --- margin of error and interval ----------------------------------------------


def test_margin_of_error_for_a_known_set():
    """P = 50, passives = 30, D = 20, n = 100.

    p = 0.5, d = 0.2; p + d − (p − d)² = 0.7 − 0.09 = 0.61
    SE = sqrt(0.61 / 100)·100 = sqrt(0.0061)·100 = 7.81025 points
    margin = 1.96 · 7.81025 = 15.30809 points
    NPS = 30, interval 30 ± 15.30809 = (14.69191, 45.30809)
    """
    nps = figures(50, 30, 20)
    assert nps.is_small_sample is False
    assert nps.score == 30
    assert nps.standard_error == pytest.approx(7.81025, abs=1e-5)
    assert nps.margin_of_error == pytest.approx(15.30809, abs=1e-5)
    low, high = nps.interval
    assert low == pytest.approx(14.69191, abs=1e-5)
    assert high == pytest.approx(45.30809, abs=1e-5)
    assert nps.promoter_share == 50
    assert nps.passive_share == 30
    assert nps.detractor_share == 20


def test_small_samples_use_the_adjusted_wald_interval():
    """P = 3, passives = 1, D = 1, n = 5 (< 30).

    n′ = 8, p′ = 3.75/8 = 0.46875, d′ = 1.75/8 = 0.21875
    centre = (p′ − d′)·100 = 25
    p′ + d′ − (p′ − d′)² = 0.6875 − 0.0625 = 0.625
    half = 1.96 · sqrt(0.625/8) · 100 = 1.96 · 0.279508 · 100 = 54.78367
    interval = (−29.78367, 79.78367); the score itself stays 100·2/5 = 40.
    """
    nps = figures(3, 1, 1)
    assert nps.is_small_sample is True
    assert nps.score == 40
    low, high = nps.interval
    assert low == pytest.approx(-29.78367, abs=1e-5)
    assert high == pytest.approx(79.78367, abs=1e-5)


def test_the_adjusted_wald_interval_is_not_symmetric_around_the_score():
    """All 10 promoters, n < 30: the plain formula would give 100 ± 0; adjusted-Wald does not.

    n′ = 13, p′ = 10.75/13, d′ = 0.75/13; centre = 10/13·100 = 76.92308
    p′ + d′ − (p′ − d′)² = 11.5/13 − (10/13)² = 0.884615 − 0.591716 = 0.292899
    half = 1.96 · sqrt(0.292899/13) · 100 = 1.96 · 0.150102 · 100 = 29.42
    interval = (47.50, 100) after clipping 106.34 to 100.
    """
    nps = figures(10, 0, 0)
    assert nps.score == 100
    low, high = nps.interval
    assert low == pytest.approx(47.50, abs=0.01)
    assert high == 100.0


def test_the_minimum_sample_size_is_configurable():
    assert figures(20, 5, 4).is_small_sample is True  # n = 29 < 30
    assert figures(20, 5, 5).is_small_sample is False  # n = 30
    assert figures(3, 1, 1, min_responses=5).is_small_sample is False
    assert figures(3, 1, 0, min_responses=5).is_small_sample is True


def test_at_the_minimum_the_plain_interval_is_used():
    """n = 30 with P = 15, D = 6: p = 0.5, d = 0.2 → SE = sqrt(0.61/30)·100 = 14.25950, margin 27.94862."""
    nps = figures(15, 9, 6)
    assert nps.score == 30
    low, high = nps.interval
    assert low == pytest.approx(30 - 27.94862, abs=1e-5)
    assert high == pytest.approx(30 + 27.94862, abs=1e-5)


def test_the_interval_is_clipped_to_plus_minus_100():
    """P = 29, D = 0, n = 29 (adjusted-Wald).

    n′ = 32, p′ = 29.75/32 = 0.9296875, d′ = 0.75/32 = 0.0234375; centre 90.625
    p′ + d′ − (p′ − d′)² = 0.953125 − 0.821289 = 0.131836
    half = 1.96 · sqrt(0.131836/32) · 100 = 12.58050 → (78.04450, 103.2055) → high clipped to 100.
    """
    low, high = figures(29, 0, 0).interval
    assert low == pytest.approx(78.04450, abs=1e-5)
    assert high == 100.0
    low, high = figures(0, 0, 29).interval
    assert low == -100.0
    assert high == pytest.approx(-78.04450, abs=1e-5)


def test_a_large_sample_interval_is_clipped_too():
    """P = 99, passives = 1, n = 100: margin = 1.96·sqrt((0.99 − 0.9801)/100)·100 = 1.95018 → 99 + 1.95 > 100."""
    nps = figures(99, 1, 0)
    assert nps.margin_of_error == pytest.approx(1.95018, abs=1e-5)
    low, high = nps.interval
    assert low == pytest.approx(97.04982, abs=1e-5)
    assert high == 100.0


# --- significance of a change ---------------------------------------------------


def test_a_large_change_is_significant():
    """Now P 60 / passives 20 / D 20 (NPS 40), before P 30 / 30 / D 40 (NPS −10), n = 100 each.

    SE₁ = sqrt((0.8 − 0.16)/100)·100 = 8
    SE₂ = sqrt((0.7 − 0.01)/100)·100 = 8.30662
    z = 50 / sqrt(64 + 69) = 50 / 11.53256 = 4.33555 > 1.96 → significant
    """
    change = change_between(figures(60, 20, 20), figures(30, 30, 40))
    assert change.points == 50
    assert change.z == pytest.approx(4.33555, abs=1e-5)
    assert change.significant is True


def test_a_small_change_is_not_significant():
    """Now P 50 / 30 / D 20 (NPS 30), before P 45 / 30 / D 25 (NPS 20), n = 100 each.

    SE₁ = 7.81025 (see above), SE₂ = sqrt((0.7 − 0.04)/100)·100 = 8.12404
    z = 10 / sqrt(61 + 66) = 10 / 11.26943 = 0.88736 < 1.96 → not significant
    """
    change = change_between(figures(50, 30, 20), figures(45, 30, 25))
    assert change.points == 10
    assert change.z == pytest.approx(0.88736, abs=1e-5)
    assert change.significant is False


def test_a_fall_is_a_negative_change():
    change = change_between(figures(30, 30, 40), figures(60, 20, 20))
    assert change.points == -50
    assert change.significant is True


def test_the_change_uses_unrounded_scores():
    """12.5 → 0 is a change of −12.5 points, not −13."""
    change = change_between(figures(0, 8, 0), figures(1, 7, 0))
    assert change.points == -12.5


def test_identical_zero_variance_periods_are_not_significant():
    """All promoters both times: SE₁ = SE₂ = 0 and no change → not significant (no division by zero)."""
    change = change_between(figures(40, 0, 0), figures(35, 0, 0))
    assert change.points == 0
    assert change.significant is False


def test_opposite_zero_variance_periods_are_significant():
    """All promoters now, all detractors before: no variance at all and 200 points apart."""
    change = change_between(figures(40, 0, 0), figures(0, 0, 35))
    assert change.points == 200
    assert change.significant is True


def test_there_is_no_change_without_data_on_either_side():
    assert change_between(figures(0, 0, 0), figures(10, 0, 0)) is None
    assert change_between(figures(10, 0, 0), figures(0, 0, 0)) is None
    assert change_between(figures(0, 0, 0), figures(0, 0, 0)) is None
