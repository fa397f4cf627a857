"""The sgld-noise reproduction: closed forms by hand, and a tiny end-to-end run."""

import json

import pytest
import torch

from genlab.experiments.sgld_noise import CMIPart, SGLDNoiseSetting, closed_form_terms, reproduce


def test_closed_form_terms_by_hand():
    # C = diag(4, 1, 0): isotropic 3 * 5, diagonal 2 * 5 (C_33 = 0), gradcov rank 2 * 5, sqrt (2 + 1)^2
    C = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    assert closed_form_terms(C) == pytest.approx({"isotropic": 15.0, "diagonal": 10.0, "gradcov": 10.0,
                                                  "sqrt-gradcov": 9.0})


def test_tiny_reproduction(tmp_path):
    setting = SGLDNoiseSetting(dataset="mnist1d", n_train=300, model="mlp", epochs=1, batch_size=50,
                               closed_form_steps=10, monte_carlo_batches=50,
                               cmi=CMIPart(dataset="mnist1d", n_train=300, width=16, lr=0.1, steps=15, trace=0.1,
                                           cov_size=16, seeds=2))
    result = reproduce(tmp_path, quiet=True, setting=setting)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["verdict"] == result.verdict
    m = data["metrics"]
    for loss in ("mse", "ce"):
        assert m[f"{loss}.max_relative_error"] < 1e-3
        assert m[f"{loss}.sqrt_over_isotropic"] == pytest.approx(m[f"{loss}.closed_form_sqrt_over_isotropic"],
                                                                rel=1e-3)
        assert abs(m[f"{loss}.monte_carlo_z_sqrt"]) < 5
    assert m["closed_form_held"] is True
    rows = data["details"]["part_b"]
    assert len(rows) == 4 and all(r["bound"] > 0 for r in rows.values())
    assert all("beyond n_train" in r["heldout"] for r in rows.values())
    # part (c): every shape, both seeds, under the CMI bound; paired by seed (same pair and selector)
    part_c = data["details"]["part_c"]
    assert set(part_c) == {"isotropic", "diagonal", "gradcov", "sqrt-gradcov"}
    for shape, r in part_c.items():
        assert [run["seed"] for run in r["runs"]] == [0, 1] and all(run["pairs"] == 1 for run in r["runs"])
        info = [run["information"] for run in r["runs"]]
        assert r["information_mean"] == pytest.approx(sum(info) / 2)
        assert r["gap_bound"] == pytest.approx((2 * r["information_mean"]) ** 0.5)
        assert m[f"cmi.{shape}.test_error_bound"] == pytest.approx(r["train_error_mean"] + r["gap_bound"])
        assert r["train_error_mean"] <= m[f"cmi.{shape}.test_error_bound_sharp"] <= r["test_error_bound"]
    assert m["cmi.verdict"] in ("held", "did not hold", "inconclusive")
    assert "figures/cmi-bounds.png" in data["figures"]
