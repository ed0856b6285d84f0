"""The anomaly scan's statistics, without a web server: the preference test's false-positive
rate on honest voters, and its power against a targeted flood."""

from __future__ import annotations

import random

from arena.integrity import _Vote, preference_evidence, win_probability

RATINGS = {1: 940.0, 2: 1000.0, 3: 1040.0, 4: 1080.0, 5: 1120.0}
ALPHA = 0.001
TRIALS = 2000


def honest_votes(rng: random.Random, n: int) -> list[_Vote]:
    votes = []
    for i in range(n):
        left, right = rng.sample(sorted(RATINGS), 2)
        p = win_probability(RATINGS[left], RATINGS[right])
        choice = "tie" if rng.random() < 0.1 else ("left" if rng.random() < p else "right")
        votes.append(_Vote(i, 1, "a", 3000, float(i), choice, left, right))
    return votes


def test_honest_voters_trip_the_preference_test_at_most_at_its_stated_rate() -> None:
    rng = random.Random(7)
    flagged = sum(
        preference_evidence(honest_votes(rng, rng.randint(10, 200)), RATINGS, alpha=ALPHA)
        is not None
        for _ in range(TRIALS)
    )
    # alpha = 0.001 over 2000 voters: 2 expected at most; 8 would be p < 0.001 by chance.
    assert flagged / TRIALS <= 4 * ALPHA


def test_a_flood_for_one_model_is_caught_with_few_votes() -> None:
    votes = [_Vote(i, None, "a", 3000, float(i), "left", 1, 2 + i % 4) for i in range(15)]
    evidence = preference_evidence(votes, RATINGS, alpha=ALPHA)
    assert evidence is not None and evidence["model_id"] == 1
    assert evidence["wins"] == 15 and evidence["p_value"] < ALPHA


def test_win_probability_is_symmetric_and_400_points_is_ten_to_one() -> None:
    assert abs(win_probability(1400, 1000) - 10 / 11) < 1e-12
    assert abs(win_probability(1000, 1400) + win_probability(1400, 1000) - 1) < 1e-12
