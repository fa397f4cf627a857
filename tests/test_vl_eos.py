"""The vl-eos reproduction end to end on a tiny setting, and its late-window statistics by hand."""

import json

import pytest

from genlab.experiments.vl_eos import VLSetting, late_stats, reproduce


def test_late_stats_by_hand():
    records = [{"step": s, "sharpness": float(s), "vl_threshold": 2.0 * s} for s in range(0, 10)]
    records.append({"step": 3, "train_loss": 1.0})  # evaluation records without sharpness are ignored
    out = late_stats(records, lr=0.5)
    # last 40% of 10 measurements: steps 6..9
    assert out["late_points"] == 4 and out["late_sharpness"] == pytest.approx(7.5)
    assert out["predicted_threshold"] == pytest.approx(15.0) and out["threshold_gd"] == 4.0
    assert out["sharpness_over_predicted"] == pytest.approx(0.5)


def test_tiny_reproduction(tmp_path):
    setting = VLSetting("mnist1d", 200, lrs=(0.1,), sigmas=(0.005, 0.02), steps=6, track_every=3, samples=(1, 2),
                        width=16)
    result = reproduce(tmp_path, quiet=True, setting=setting)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["verdict"] == result.verdict and (tmp_path / "figures" / "sharpness.png").is_file()
    runs = data["details"]["runs"]
    assert set(runs) == {"gd-lr0.1", "vgd-lr0.1-sigma0.005-S1", "vgd-lr0.1-sigma0.02-S1", "vgd-lr0.1-sigma0.02-S2",
                         "ivon-lr0.1"}
    assert all("predicted_threshold" in r for n, r in runs.items() if n.startswith("vgd"))
    assert "late_preconditioned_sharpness" in runs["ivon-lr0.1"]
