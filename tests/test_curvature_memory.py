"""A memory budget for curvature (``genlab curvature --max-memory``): the plan it makes, and the same numbers."""

import json

import pytest
import torch
from torch import nn

from genlab.curvature import HessianOperator, lanczos
from genlab.curvature.memory import WORK_VECTORS, graph_bytes, parse_size, plan_memory
from genlab.errors import ConfigError
from genlab.objective import Objective


def test_sizes_parse_with_units_and_bad_ones_name_the_syntax():
    assert parse_size("2GB") == 2 * 10 ** 9 and parse_size("1.5GiB") == int(1.5 * 2 ** 30)
    assert parse_size("800mb") == 8 * 10 ** 8 and parse_size("4096") == 4096 and parse_size(100) == 100
    for bad in ("lots", "2 parsecs", "-1GB", "0"):
        with pytest.raises(ConfigError, match="--max-memory"):
            parse_size(bad)


def _obj(n=400, batch=100):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 3)).double()
    return Objective(model, "ce", (torch.randn(n, 20).double(), torch.randint(0, 3, (n,))), batch_size=batch)


def test_one_chunks_graph_is_measured_and_grows_with_the_chunk():
    small, big = graph_bytes(_obj(batch=50)), graph_bytes(_obj(batch=200))
    # activations (batch x 32 hidden, float64) are saved; parameters are counted too
    assert small > 50 * 32 * 8 and big > small + 150 * 32 * 8


def test_the_plan_caches_only_what_fits_and_gives_the_basis_the_rest():
    obj = _obj()
    d = obj.num_params()
    vec = d * 8
    per = graph_bytes(obj)
    roomy = plan_memory(obj, 10 ** 9, top_k=3)
    assert roomy.cache_graph and roomy.chunks == 4 and roomy.basis_columns == d  # capped only by d
    tight = plan_memory(obj, per + (WORK_VECTORS + 12) * vec, top_k=3)
    assert tight.cache_graph is False and tight.basis_columns == 12
    assert plan_memory(obj, None, top_k=3).basis_columns is None  # no budget, no cap
    with pytest.raises(ConfigError, match="too small.*--top-k 3.*--trace-matvecs 90"):
        plan_memory(obj, per + (WORK_VECTORS + 6) * vec, top_k=3, trace_matvecs=90)


def test_a_capped_basis_gives_the_same_eigenvalues():
    obj = _obj()
    H = HessianOperator(obj)
    free = lanczos(H, 3, tol=1e-10, max_iter=2000, generator=torch.Generator().manual_seed(0))
    capped = lanczos(H, 3, tol=1e-10, max_iter=2000, max_basis=8, generator=torch.Generator().manual_seed(0))
    assert capped.converged and capped.basis_columns <= 9
    for a, b in zip(free.eigenvalues, capped.eigenvalues):
        assert float(b) == pytest.approx(float(a), rel=1e-8)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from genlab.config import TrainConfig
    from genlab.train import train

    path = tmp_path_factory.mktemp("mem") / "run"
    train(TrainConfig(dataset="mnist1d", n_train=300, model="mlp", width=16, depth=1, optimizer="gd", lr=0.1,
                      steps=20, seed=0), path, quiet=True)
    return path


def test_genlab_curvature_under_a_budget_records_its_plan_and_agrees(small_run, capsys):
    from genlab.cli import main
    from genlab.curvature.analysis import curvature

    free = curvature(small_run, top_k=3, tol=1e-8, figures=False)
    assert free["memory"]["max_memory"] is None and free["memory"]["basis_columns"] is None
    vec = free["memory"]["vector_bytes"]
    code = main(["curvature", str(small_run), "--top-k", "3", "--tol", "1e-8",
                 "--max-memory", str(40 * vec + 10 ** 6), "--batch-size", "50"])
    out = capsys.readouterr().out
    assert code == 0, out
    got = json.loads((small_run / "curvature.json").read_text())
    mem = got["memory"]
    assert mem["max_memory"] == 40 * vec + 10 ** 6 and mem["chunks"] == 6 and mem["graph_bytes_per_chunk"] > 0
    assert mem["basis_columns_used"] <= mem["basis_columns"] + 1
    assert f"basis of at most {mem['basis_columns']} vectors, graphs " \
           f"{'cached' if mem['cache_graph'] else 'streamed'}" in out
    for a, b in zip(free["top_eigenvalues"], got["top_eigenvalues"]):
        assert b == pytest.approx(a, rel=1e-6)
    capsys.readouterr()
    for args, message in ((["--max-memory", "1kB"], "--max-memory 0.0 MB: too small; it must hold one batch's"),
                          (["--max-memory", "lots"], "--max-memory: cannot read 'lots'"),
                          (["--batch-size", "0"], "--batch-size: must be an integer")):
        assert main(["curvature", str(small_run), *args]) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and message in err[0], err
