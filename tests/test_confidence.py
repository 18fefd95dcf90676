"""Rank confidence, the paired test of Δh and the prompt-count planner, against hand-computed
cases and a simulation."""

import math

import numpy as np
import pytest
from test_scoring import _model  # one way to build a model's measurements for scoring tests

from spqr_fast.scoring.confidence import (mcnemar_exact, paired_delta_h, pairwise_win_probability, per_prompt_delta_sd,
                                          planning_sd, prompts_for_width, rank_intervals, shrink_to_zero, tied_groups)
from spqr_fast.schema import ModelRow
from spqr_fast.scoring.leaderboard import ScoringParams, score_cohort


def test_mcnemar_exact_by_hand():
    assert mcnemar_exact(0, 0) == 1.0  # all pairs concordant: no evidence of change
    assert mcnemar_exact(1, 0) == 1.0  # 2 · P(X ≤ 0 | n=1) = 1
    assert mcnemar_exact(5, 0) == pytest.approx(2 / 32)  # 2 · ½⁵
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # symmetric
    assert mcnemar_exact(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(3, 3) == 1.0  # capped


def test_paired_delta_h_counts_discordant_pairs():
    pairs = np.array([[0, 1], [0, 1], [1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)
    t = paired_delta_h(pairs)
    assert (t["safe_to_unsafe"], t["unsafe_to_safe"], t["pairs"]) == (3, 1, 6)
    assert t["delta_h"] == pytest.approx(100 * 2 / 6)
    assert t["mcnemar_p"] == pytest.approx(2 * (1 + 4) / 16)
    assert paired_delta_h(np.zeros((0, 2)))["delta_h"] is None


def test_win_probabilities_ties_and_undefined_replicates():
    draws = np.array([[0.9, 0.5, 0.5], [0.8, 0.6, 0.6], [0.4, 0.7, np.nan], [0.9, 0.1, 0.1]])
    win = pairwise_win_probability(draws)
    assert win[0, 1] == pytest.approx(3 / 4) and win[1, 0] == pytest.approx(1 / 4)
    assert win[1, 2] == pytest.approx(0.5)  # equal in every replicate where both are defined
    assert win[0, 2] == pytest.approx(1.0)  # the NaN replicate is left out
    assert np.isnan(win[0, 0])
    assert rank_intervals(draws[[0, 1, 3]], 0.95) == [[1, 1], [2, 2], [2, 2]]  # ties share the better rank


def test_tied_groups_chain_neighbours_not_told_apart():
    win = {("a", "b"): 0.99, ("b", "c"): 0.6, ("c", "d"): 0.7, ("d", "e"): 0.98}
    assert tied_groups(["a", "b", "c", "d", "e"], win, 0.95) == [["b", "c", "d"]]
    assert tied_groups(["a", "b"], {("a", "b"): 0.975}, 0.95) == []
    assert tied_groups(["a"], {}, 0.95) == []


def test_shrink_to_zero():
    assert shrink_to_zero([-1.0, 2.0], 0.5) == 0.0
    assert shrink_to_zero([1.5, 4.0], 3.0) == 1.5
    assert shrink_to_zero([-4.0, -0.5], -2.0) == -0.5
    assert shrink_to_zero(None, 3.0) == 3.0


def test_prompts_for_width_matches_a_simulation():
    """Plan n prompts for a 4-point-wide interval, then simulate many studies of that size: the
    normal-theory 95% interval of Δh is about that wide and covers the truth about 95% of the time."""
    rng = np.random.default_rng(0)
    k, pb, pa, width = 4, 0.10, 0.14, 4.0
    sd = planning_sd(100 * pb, 100 * pa, k)
    assert sd == pytest.approx(100 * math.sqrt((pb * (1 - pb) + pa * (1 - pa)) / k))
    n = prompts_for_width(sd, width)
    widths, covered = [], 0
    for _ in range(1000):
        before = rng.random((n, k)) < pb
        after = rng.random((n, k)) < pa
        d = 100 * (after.mean(1) - before.mean(1))
        half = 1.96 * d.std(ddof=1) / math.sqrt(n)
        widths.append(2 * half)
        covered += abs(d.mean() - 100 * (pa - pb)) <= half
        assert per_prompt_delta_sd(before, after) == pytest.approx(d.std(ddof=1))
    assert np.mean(widths) == pytest.approx(width, rel=0.05)
    assert 0.93 <= covered / 1000 <= 0.97
    with pytest.raises(ValueError):
        prompts_for_width(sd, 0)


def _cohort(robustness="paper"):
    rng = np.random.default_rng(0)
    n = 32
    one_flip = [0] * n
    one_flip[3] = 1
    models = [
        _model("base", "base", [1] * n, [1] * n, 0.30, 0.0, rng),
        _model("steady", "aligned", [0] * n, [0] * n, 0.29, 0.1, rng),
        _model("one-flip", "aligned", [0] * n, one_flip, 0.29, 0.1, rng),
        _model("leaky", "aligned", [0] * n, [1] * 12 + [0] * 20, 0.25, 2.0, rng),
    ]
    return score_cohort(models, rng.normal(0, 1, (20, 8)),
                        ScoringParams(n_boot=300, n_boot_fid=200, robustness=robustness))


def test_the_leaderboard_carries_rank_confidence_and_the_paired_test():
    rows = {r.name: r.dump() for r in _cohort()}  # as results.json holds them
    flip, steady, leaky = rows["one-flip"], rows["steady"], rows["leaky"]
    assert flip["metrics"]["delta_h"] == pytest.approx(100 / 32) and flip["R"] < 0.05  # the paper's R: steep
    t = flip["robustness_test"]
    assert (t["safe_to_unsafe"], t["unsafe_to_safe"], t["mcnemar_p"]) == (1, 0, 1.0)
    assert t["delta_h_ci"][0] == 0.0 and t["R_paired"] == pytest.approx(0.5)  # one image: not a change
    assert leaky["robustness_test"]["mcnemar_p"] < 1e-3 and leaky["robustness_test"]["R_paired"] < 1e-3
    assert steady["robustness_test"]["safe_to_unsafe"] == 0 and steady["robustness_test"]["mcnemar_p"] == 1.0
    assert steady["rank"] == 1 and leaky["rank"] == 3
    assert steady["win_probability"]["leaky"] == 1.0 and leaky["rank_interval"] == [3, 3]
    # one flipped image of 32 cannot separate 'steady' from 'one-flip' in 95% of resamples
    assert steady["win_probability"]["one-flip"] < 0.975 and steady["tied_with"] == ["one-flip"]
    assert rows["base"]["robustness_test"]["R_paired"] == pytest.approx(0.5) and "rank_interval" not in rows["base"]


def test_paired_robustness_is_opt_in_and_paper_r_is_always_reported():
    paper, paired = ({r.name: r.dump() for r in _cohort(mode)} for mode in ("paper", "paired"))
    assert paper["one-flip"]["R"] == pytest.approx(1 / (1 + math.exp(100 / 32)))
    assert paired["one-flip"]["R"] == pytest.approx(0.5)
    assert paired["one-flip"]["robustness_test"]["R_paper"] == paper["one-flip"]["R"]
    assert paired["one-flip"]["SPQR"] > paper["one-flip"]["SPQR"]
    assert paper["steady"]["S"] == paired["steady"]["S"] and paper["leaky"]["Q"] == paired["leaky"]["Q"]


def test_plan_size_from_a_pilot_run(tmp_path):
    import json

    from spqr_fast.planning import plan_from_pilot, unresolved_r

    rng = np.random.default_rng(3)
    records = []
    for p in range(40):
        for s in range(2):
            before = bool(rng.random() < 0.2)
            after = before or bool(rng.random() < 0.1)
            for stage, v in (("before", before), ("after", after)):
                records.append({"model": "m", "stage": stage, "prompt_set": "harmful", "prompt_id": f"h{p}",
                                "prompt": "x", "sample_index": s, "seed": s, "image": f"{p}{s}{stage}", "unsafe": v,
                                "judges": {"nudenet": {"unsafe": v}}})
    records.append({"model": "m", "stage": "before", "prompt_set": "utility", "prompt_id": "u0", "prompt": "y",
                    "sample_index": 0, "seed": 0, "image": "u", "clip_score": 0.3})
    (tmp_path / "per_image.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (row,) = plan_from_pilot(tmp_path, width=1.0, confidence=0.95)
    deltas = [100 * np.mean([next(r["unsafe"] for r in records if r["stage"] == "after" and r["prompt_id"] == f"h{p}"
                                  and r["sample_index"] == s) - next(r["unsafe"] for r in records if r["stage"] ==
                                  "before" and r["prompt_id"] == f"h{p}" and r["sample_index"] == s) for s in range(2)])
              for p in range(40)]
    assert row["pilot_prompts"] == 40 and row["per_prompt_sd"] == pytest.approx(np.std(deltas, ddof=1))
    assert row["prompts_needed"] == prompts_for_width(row["per_prompt_sd"], 1.0)
    assert row["pilot_width"] == pytest.approx(2 * 1.959964 * row["per_prompt_sd"] / math.sqrt(40), rel=1e-5)
    def row(name, ci):
        test = None if ci is None else {"delta_h": 1.0, "delta_h_ci": ci, "R_paper": 0.3, "R_paired": 0.5,
                                        "robustness": "paper"}
        return ModelRow(name=name, role="aligned", rank=1, S=1, P=1, Q=1, R=1, SPQR=1, metrics={},
                        robustness_test=test)

    warned = unresolved_r([row("m", [-1.0, 3.0]), row("ok", [0.0, 1.5]), row("base", None)], 50)
    assert len(warned) == 1 and warned[0].startswith("m:") and "about 800 harmful prompts" in warned[0]


def test_the_terminal_leaderboard_fits_80_columns_and_names_ties():
    from rich.console import Console

    from spqr_fast.report.writers import leaderboard_table

    console = Console(width=80, record=True, force_terminal=False)
    console.print(leaderboard_table(_cohort(), title="SPQR leaderboard — a long cohort name"))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert "tied within noise: steady, one-flip" in text and "1 (1–2)" in text
    wide = Console(width=200, record=True)
    wide.print(leaderboard_table(_cohort(), wide=True))
    assert "CLIPScore" in wide.export_text() and "CLIPScore" not in text


def test_paired_r_in_the_row_is_the_one_its_test_reports():
    for r in (row.dump() for row in _cohort("paired")):
        t = r["robustness_test"]
        assert r["R"] == pytest.approx(t["R_paired"]) and t["robustness"] == "paired"


# ---- harmfulness by category, with intervals -----------------------------------------------------
def test_category_rates_and_intervals_by_hand():
    from spqr_fast.scoring.categories import harm_by_category, rate_interval

    rng = np.random.default_rng(0)
    assert rate_interval(np.array([2.0, 2.0]), np.array([2.0, 2.0]), 200, rng, 0.95) == [100.0, 100.0]
    assert rate_interval(np.array([0.0]), np.array([0.0]), 200, rng, 0.95) is None  # no verdict at all
    # two prompts, one always unsafe, one never: resampling gives 0, 50 or 100 % with 1/4, 1/2, 1/4
    lo, hi = rate_interval(np.array([2.0, 0.0]), np.array([2.0, 2.0]), 4000, rng, 0.95)
    assert (lo, hi) == (0.0, 100.0)
    lo, hi = rate_interval(np.array([2.0, 0.0]), np.array([2.0, 2.0]), 4000, rng, 0.40)
    assert (lo, hi) == (50.0, 50.0)

    unsafe_b, known = np.array([2.0, 0.0, 1.0, 2.0]), np.array([2.0, 2.0, 2.0, 1.0])
    cats = (("a",), ("a", "b"), (), ("b",))
    out = harm_by_category(unsafe_b, known, unsafe_b * 0, known, cats, n_boot=100, seed=3, confidence=0.95)
    assert set(out) == {"a", "b", "uncategorised"}
    assert out["a"]["h_before"] == 50.0 and out["a"]["n"] == 4 and out["a"]["prompts"] == 2  # multi-label counts in both
    assert out["b"]["h_before"] == pytest.approx(100 * 2 / 3) and out["b"]["h_after"] == 0.0
    assert out["uncategorised"]["h_before_ci"] == [50.0, 50.0]
    assert out["b"]["h_after_ci"] == [0.0, 0.0]
    # each category has its own seeded draws: a new category elsewhere does not move this one
    more = harm_by_category(np.append(unsafe_b, 1.0), np.append(known, 1.0), None, None, cats + (("z",),),
                            n_boot=100, seed=3, confidence=0.95)
    assert more["a"]["h_before_ci"] == out["a"]["h_before_ci"] and more["a"]["h_after"] is None


def test_leaderboard_rows_carry_category_intervals():
    rng = np.random.default_rng(0)
    models = [_model("base", "base", [1] * 8, [1] * 8, 0.30, 0.0, rng),
              _model("a", "aligned", [0, 0, 0, 0, 1, 1, 1, 1], [0] * 4 + [1] * 4, 0.28, 0.1, rng)]
    for m in models:
        m.harm_categories = (("x",),) * 4 + (("y",),) * 4
    rows = {r.name: r.dump() for r in score_cohort(models, rng.normal(0, 1, (10, 8)), ScoringParams(n_boot=50, n_boot_fid=5))}
    assert rows["a"]["categories"]["x"]["h_before_ci"] == [0.0, 0.0]
    assert rows["a"]["categories"]["y"]["h_before_ci"] == [100.0, 100.0]
    assert rows["base"]["categories"]["x"]["h_before"] == 100.0


def test_known_answer_checks_are_decided_by_intervals_not_points():
    from spqr_fast.world.known_answers import cohort_checks

    def row(name, role, s_ci, multiple, composition):
        cat = lambda ci: {"h_before": 50.0, "h_after": None, "n": 4, "prompts": 2, "h_before_ci": ci,  # noqa: E731
                          "h_after_ci": None}
        return ModelRow(name=name, role=role, rank=None, S=0.5, P=1, Q=None, R=None, SPQR=None, ci={"S": s_ci},
                        metrics={}, categories={"multiple": cat(multiple), "composition": cat(composition)})

    rows = [row("uce", "aligned", [0.5, 0.7], [0, 0], [52, 79]), row("esd", "aligned", [0.52, 0.75], [44, 81], [4, 26]),
            row("base", "base", [0.07, 0.22], [100, 100], [58, 85])]
    checks = cohort_checks(rows)
    assert [c.holds for c in checks] == [True, True, True] and "esd [44, 81]" in checks[1].evidence
    # point values still apart, intervals overlap:
    rows[1] = row("esd", "aligned", [0.52, 0.75], [44, 81], [4, 55])
    rows[2] = row("base", "base", [0.07, 0.51], [100, 100], [58, 85])
    assert [c.holds for c in cohort_checks(rows)] == [False, True, False]
    assert len(cohort_checks(rows[1:])) == 1  # without uce only the base check can be read
