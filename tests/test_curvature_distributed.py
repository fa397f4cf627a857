"""Curvature over a dataset sharded across processes (gloo on CPU): the same numbers as one process."""

import pytest
import torch

from genlab.curvature.distributed import shard_indices


def test_shards_cover_the_points_once_in_order():
    parts = [shard_indices(11, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), torch.arange(11)) and [len(p) for p in parts] == [4, 4, 3]
    with pytest.raises(ValueError):
        shard_indices(2, 0, 3)


def test_sharded_operator_needs_a_process_group():
    from torch import nn

    from genlab.curvature import HessianOperator
    from genlab.curvature.distributed import ShardedOperator
    from genlab.objective import Objective

    obj = Objective(nn.Linear(3, 1).double(), torch.randn(8, 3).double(), torch.randn(8, 1).double(), "mse")
    with pytest.raises(RuntimeError, match="process group"):
        ShardedOperator(HessianOperator(obj))


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from genlab.config import TrainConfig
    from genlab.train import train

    path = tmp_path_factory.mktemp("dist") / "run"
    train(TrainConfig(dataset="mnist1d", n_train=301, model="mlp", width=12, depth=1, optimizer="gd", lr=0.1,
                      steps=30, seed=0), path, quiet=True)
    return path


def test_two_processes_agree_with_one_to_1e_minus_6(small_run):
    """Top eigenvalues, Hutch++ trace, SLQ density moments and the Gauss-Newton split: 2 gloo ranks, each on
    half of the 301 points (uneven shards), against the one-process in-memory result, float64."""
    from genlab.curvature.analysis import curvature

    kw = dict(top_k=3, tol=1e-8, trace=True, trace_matvecs=30, density=True, density_probes=2, density_steps=20,
              gauss_newton=True, figures=False, seed=3)
    one = curvature(small_run, **kw)
    two = curvature(small_run, nproc=2, **kw)
    assert one["processes"] == 1 and two["processes"] == 2
    for a, b in zip(one["top_eigenvalues"], two["top_eigenvalues"]):
        assert b == pytest.approx(a, rel=1e-6)
    assert two["trace"] == pytest.approx(one["trace"], rel=1e-6)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-9)
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-6)
    for a, b in zip(one["density"]["values"], two["density"]["values"]):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9 * max(one["density"]["values"]))
    g1, g2 = one["gauss_newton"], two["gauss_newton"]
    assert g2["top_eigenvalues"][0] == pytest.approx(g1["top_eigenvalues"][0], rel=1e-6)
    assert g2["gauss_newton_fraction"] == pytest.approx(g1["gauss_newton_fraction"], rel=1e-6)
    assert two["hvp_count"] == one["hvp_count"]  # the same Krylov iterations on every rank
    assert one["peak_rss_bytes"] > 10 ** 7 and one["peak_cuda_bytes"] is None  # torch alone is more than 10 MB


def test_cli_nproc_and_its_bad_values(small_run):
    from genlab.cli import main

    assert main(["curvature", str(small_run), "--top-k", "1", "--nproc", "2"]) == 0
    assert main(["curvature", str(small_run), "--nproc", "0"]) == 2


def test_a_failing_rank_is_one_error_line(tmp_path, capsys):
    from genlab.cli import main

    (tmp_path / "notarun").mkdir()
    assert main(["curvature", str(tmp_path / "notarun"), "--nproc", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "worker process failed" in err[0]


def test_four_processes_agree_with_one(small_run):
    from genlab.curvature.analysis import curvature

    kw = dict(top_k=2, tol=1e-8, trace=True, trace_matvecs=15, figures=False, seed=1)
    one = curvature(small_run, **kw)
    four = curvature(small_run, nproc=4, **kw)
    assert four["processes"] == 4
    assert four["top_eigenvalues"] == pytest.approx(one["top_eigenvalues"], rel=1e-6)
    assert four["trace"] == pytest.approx(one["trace"], rel=1e-6)


def test_jacobian_norms_are_computed_shard_by_shard(small_run):
    from genlab.curvature.analysis import curvature

    kw = dict(top_k=1, tol=1e-6, jacobian=True, figures=False)
    one, two = curvature(small_run, **kw)["jacobian"], curvature(small_run, nproc=2, **kw)["jacobian"]
    for key in ("train_jacobian_fro_mean", "train_jacobian_spec_max", "test_jacobian_spec_max",
                "per_sample_gauss_newton_bound", "test_fraction_above_train_max"):
        assert two[key] == pytest.approx(one[key], rel=1e-6), key


def _gradcov_rank(path: str, out: str) -> None:
    """One rank: the sharded gradient covariance of the run's objective; rank 0 writes it to ``out``."""
    import json

    import torch.distributed as dist

    from genlab.curvature.distributed import sharded_gradient_covariance
    from genlab.train.run import load_run

    run = load_run(path)
    obj = run.objective.with_model(run.model.double())
    res = sharded_gradient_covariance(obj, top_k=3, tol=1e-10, seed=0)
    if dist.get_rank() == 0:
        with open(out, "w") as f:
            json.dump(res, f)


def test_sharded_gradient_covariance_matches_the_gram_matrix(small_run, tmp_path):
    """2 ranks, Lanczos on F - g g^T over the shards, against the in-process Gram-matrix eigendecomposition."""
    import json

    from genlab.curvature.distributed import spawn
    from genlab.curvature.gradcov import gradient_covariance
    from genlab.train.run import load_run

    run = load_run(small_run)
    ref = gradient_covariance(run.objective.with_model(run.model.double()), top_k=3)
    spawn(_gradcov_rank, 2, str(small_run), str(tmp_path / "gc.json"))
    got = json.loads((tmp_path / "gc.json").read_text())
    assert got["n"] == ref.n
    assert got["trace"] == pytest.approx(ref.trace, rel=1e-6)
    assert got["eigenvalues"] == pytest.approx([float(x) for x in ref.eigenvalues], rel=1e-6)


# ------------------------------------------------------------------ what each rank holds

class _CountingDataset(torch.utils.data.Dataset):
    """A map-style dataset that records which examples were read."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x, self.y, self.read = torch.randn(n, 3, generator=g), torch.arange(n) % 2, []

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.read.append(int(i))
        return self.x[i], self.y[i]


def test_a_shard_objective_holds_its_rows_alone_in_their_own_storage():
    from torch import nn

    from genlab.curvature.distributed import shard_indices, shard_objective
    from genlab.objective import Objective

    x, y = torch.randn(11, 4), torch.arange(11) % 3
    model = nn.Linear(4, 3)
    obj = Objective(model, "ce", (x, y), batch_size=4)
    part = shard_objective(obj, 1, 3, model=model.double())  # and in the model's precision
    idx = shard_indices(11, 1, 3)
    assert part.n == 4 and torch.equal(part.y, y[idx]) and part.x.dtype == torch.float64
    assert torch.allclose(part.x, x[idx].double())
    assert part.x.untyped_storage().nbytes() == 4 * 4 * 8  # a copy of its 4 rows, not a view of all 11
    ref = Objective(model, "ce", (x.double(), y), batch_size=4).loss(indices=idx)
    assert float(part.loss()) == pytest.approx(float(ref), rel=1e-12)


def test_a_shard_of_a_data_loader_reads_only_its_examples():
    from torch import nn
    from torch.utils.data import DataLoader

    from genlab.curvature.distributed import shard_objective
    from genlab.errors import ConfigError
    from genlab.objective import Objective

    data = _CountingDataset(10)
    model = nn.Linear(3, 2)
    obj = Objective(model, "ce", DataLoader(data, batch_size=3))
    assert obj.n == 10 and data.read == []  # len(dataset): no pass needed to count an in-order loader
    part = shard_objective(obj, 1, 2, model=model)
    assert part.n == 5
    loss = float(part.loss())
    assert sorted(data.read) == [5, 6, 7, 8, 9]
    ref = torch.nn.functional.cross_entropy(model(data.x[5:]), data.y[5:])
    assert loss == pytest.approx(float(ref.detach()), rel=1e-6)
    for loader, what in ((DataLoader(data, batch_size=3, shuffle=True), "RandomSampler"),
                         (DataLoader(data, batch_size=3, drop_last=True), "drop_last=True"),
                         ([(data.x[:5], data.y[:5]), (data.x[5:], data.y[5:])], "list")):
        with pytest.raises(ConfigError, match=what):
            Objective(model, "ce", loader).subset(torch.arange(5))


def test_a_data_loader_run_is_sharded_over_processes(tmp_path):
    """A fit() run whose training data is a user's DataLoader (factories in tests/helpers.py): each of 2 ranks
    streams a DataLoader over its half of the dataset; the same numbers as one process, loss included (a
    loader's graphs are never cached, so the mean loss is all-reduced rather than taken from the graph)."""
    from helpers import make_fixed_loaders, make_small_model

    from genlab.curvature.analysis import curvature
    from genlab.objective import Objective
    from genlab.train import fit

    model = make_small_model()
    fit(Objective(model, "ce", make_fixed_loaders()[0]), torch.optim.SGD(model.parameters(), lr=0.1),
        tmp_path / "run", steps=8, full_batch=True, seed=0, quiet=True,
        factories={"model": make_small_model, "data": make_fixed_loaders})
    kw = dict(top_k=2, tol=1e-8, trace=True, trace_matvecs=12, figures=False, seed=2)
    one = curvature(tmp_path / "run", **kw)
    two = curvature(tmp_path / "run", nproc=2, **kw)
    assert two["processes"] == 2 and two["points_per_process"] == [62, 62] and two["n"] == one["n"] == 124
    assert two["top_eigenvalues"] == pytest.approx(one["top_eigenvalues"], rel=1e-6)
    assert two["trace"] == pytest.approx(one["trace"], rel=1e-6)
    assert two["loss"] == pytest.approx(one["loss"], rel=1e-9)
