"""The sgld-noise reproduction: closed forms by hand, and a tiny end-to-end run."""

import json

import pytest
import torch

from genlab.experiments.sgld_noise import SGLDNoiseSetting, closed_form_terms, reproduce


def test_closed_form_terms_by_hand():
    # C = diag(4, 1, 0): isotropic 3 * 5, diagonal 2 * 5 (C_33 = 0), gradcov rank 2 * 5, sqrt (2 + 1)^2
    C = torch.diag(torch.tensor([4.0, 1.0, 0.0], dtype=torch.float64))
    assert closed_form_terms(C) == pytest.approx({"isotropic": 15.0, "diagonal": 10.0, "gradcov": 10.0,
                                                  "sqrt-gradcov": 9.0})


def test_tiny_reproduction(tmp_path):
    setting = SGLDNoiseSetting(dataset="mnist1d", n_train=300, model="mlp", epochs=1, batch_size=50,
                               closed_form_steps=10, monte_carlo_batches=50)
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
