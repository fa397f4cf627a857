"""The sharpening reproduction: its statistics on hand-made series, and a tiny end-to-end run."""

import json
import math

import pytest

from genlab.cli import main
from genlab.curvature.eos import correlation, edge_of_stability_summary
from genlab.experiments import read_results
from genlab.experiments.sharpening import SharpeningSetting, _verdict, reproduce


def records(values, threshold=10.0, every=10):
    return [{"step": i * every, "sharpness": v, "stability_threshold": threshold} for i, v in enumerate(values)]


def test_edge_of_stability_summary_by_hand():
    s = edge_of_stability_summary(records([2, 5, 8, 9.5, 10.5, 9.2, 12, 10]))
    assert s["reached_step"] == 30                      # 9.5 >= 0.9 x 10 first at index 3
    assert s["fraction_in_band_after"] == pytest.approx(4 / 5)   # 12 is outside 10 +- 10%
    assert s["initial_ratio"] == pytest.approx(0.2) and s["max_ratio"] == pytest.approx(1.2)
    never = edge_of_stability_summary(records([1, 2, 3]))
    assert never["reached_step"] is None and math.isnan(never["fraction_in_band_after"])
    with pytest.raises(ValueError):
        edge_of_stability_summary([{"step": 0}])


def test_correlation():
    c = correlation([1, 2, 3, 4], [2, 4, 6, 8.5])
    assert c["pearson"] > 0.99 and c["spearman"] == pytest.approx(1.0)
    assert math.isnan(correlation([1, 2], [1, 2])["pearson"])


def run_stats(loss, reached, frac, corr, points=10):
    return {"loss": loss, "reached_step": reached, "fraction_in_band_after": frac,
            "corr_sharpening": {"pearson": corr, "points": points}, "corr_all": {"pearson": corr},
            "ratio_after_mean": 1.0, "gauss_newton_fraction": 0.99, "test_accuracy": 0.5}


def test_verdict_rules():
    ok = {"mse-a": run_stats("mse", 100, 0.9, 0.95), "ce-a": run_stats("ce", 100, 0.85, 0.9)}
    assert _verdict(ok)[1] == "held"
    ce_fails = {**ok, "ce-a": run_stats("ce", 100, 0.6, 0.9)}
    metrics, verdict = _verdict(ce_fails)
    assert verdict == "inconclusive" and metrics["eos_held_mse"] and not metrics["eos_held_ce"]
    mse_fails = {**ok, "mse-a": run_stats("mse", None, math.nan, 0.95)}
    assert _verdict(mse_fails)[1] == "did not hold"
    weak_corr = {**ok, "mse-a": run_stats("mse", 100, 0.9, 0.3)}
    assert _verdict(weak_corr)[1] == "inconclusive"


def nan_back(v):
    """Undo results.json's NaN -> null (recursively in dicts)."""
    return math.nan if v is None else {k: nan_back(x) for k, x in v.items()} if isinstance(v, dict) else v


def test_tiny_reproduction_end_to_end(tmp_path):
    setting = SharpeningSetting("mnist1d", 300, (("mse", 0.5, 60), ("ce", 1.0, 60)), track_every=10, width=32)
    result = reproduce(tmp_path, setting=setting, quiet=True)
    again = read_results(tmp_path)
    assert again.verdict == result.verdict
    # the verdict follows from the per-run statistics results.json records (NaN is written as null)
    recorded = {name: {k: (v if k == "reached_step" else nan_back(v)) for k, v in r.items()}
                for name, r in again.details["runs"].items()}
    metrics, verdict = _verdict(recorded)
    assert verdict == again.verdict
    for key in ("eos_held", "jacobian_tracking_held", "runs_reaching_band", "runs_staying_in_band",
                "runs_with_sharpening_phase"):
        assert again.metrics[key] == metrics[key], key
    assert sorted(again.figures) == ["figures/sharpness.png", "figures/sharpness_vs_jacobian.png"]
    runs = again.details["runs"]
    assert set(runs) == {"mse-lr0.5", "ce-lr1"}
    for r in runs.values():
        assert r["measurements"] == 7 and 0 < r["gauss_newton_fraction"] <= 1.0 + 1e-6
    # each run is an ordinary run directory with the tracked metrics
    recs = [json.loads(line) for line in (tmp_path / "runs" / "mse-lr0.5" / "metrics.jsonl").read_text().splitlines()]
    assert sum("jacobian_spec_max" in r for r in recs) == 7


def test_reproduce_command_rejects_unknown_names(capsys):
    assert main(["reproduce", "nope"]) == 2
    assert "allowed: sharpening" in capsys.readouterr().err
