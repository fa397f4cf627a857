"""Datasets: shapes, normalisation, determinism, transforms and clear errors for bad files."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data import DATASETS, list_datasets, load_dataset, resolve_data_dir
from genlab.data.mnist1d import templates
from genlab.errors import DataError

SHARED = resolve_data_dir()[0]  # $GENLAB_DATA, else ../shared/data, as genlab itself looks


def test_mnist1d_shapes_balance_and_standardisation():
    d = load_dataset("mnist1d")
    assert d.x_train.shape == (4000, 40) and d.x_test.shape == (1000, 40)
    assert d.y_train.dtype == torch.int64 and d.input_shape == (40,) and d.num_classes == 10
    counts = torch.bincount(torch.cat([d.y_train, d.y_test]), minlength=10)
    assert counts.tolist() == [500] * 10
    both = torch.cat([d.x_train, d.x_test])
    assert abs(float(both.mean())) < 1e-4 and abs(float(both.std(unbiased=False)) - 1) < 1e-4
    # the classes differ on average (the task is learnable)
    means = torch.stack([d.x_train[d.y_train == c].mean(0) for c in range(10)])
    assert torch.cdist(means, means).masked_fill(torch.eye(10, dtype=bool), 1e9).min() > 0.1
    assert torch.equal(load_dataset("mnist1d").x_train, d.x_train)  # deterministic


def test_mnist1d_matches_the_reference_generator():
    """Pinned values of the official MNIST-1D (seed 42).

    Obtained once by running the reference procedure (greydanus/mnist1d ``make_dataset`` with its default
    arguments, global numpy seed 42) next to ours: every value and label agreed exactly. The pins keep a numpy
    or scipy upgrade from silently changing the dataset.
    """
    from genlab.data.mnist1d import generate

    x_train, y_train, x_test, y_test = generate(42, 5000)
    assert y_train[:12].tolist() == [2, 6, 4, 5, 6, 6, 6, 0, 3, 1, 6, 9]
    assert y_test[:12].tolist() == [2, 6, 3, 9, 4, 3, 1, 9, 5, 2, 0, 7]
    np.testing.assert_allclose(x_train[0, :6], [-0.3320056674, -0.4719103657, -0.7786970763, -1.0097408265,
                                                -0.8823525654, 0.1039348126], atol=1e-9)
    np.testing.assert_allclose(x_test[-1, -4:], [0.4472328851, 0.6598756471, 0.8777343498, 1.1931518368],
                               atol=1e-9)
    assert np.abs(x_train).sum() == pytest.approx(118338.29510719894, rel=1e-12)


def test_mnist1d_templates_whitened():
    t = templates()
    np.testing.assert_allclose(t[:, 0], 0.0, atol=1e-12)
    np.testing.assert_allclose((t * 6).std(1), 1.0, atol=1e-12)


def test_mnist1d_generator_seed_option():
    a = load_dataset("mnist1d", options={"seed": 1, "num_samples": 1000})
    assert a.x_train.shape == (800, 40)
    assert not torch.equal(a.x_train[:10], load_dataset("mnist1d").x_train[:10])


def test_digits():
    d = load_dataset("digits")
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert abs(float(d.x_train.mean())) < 1e-5 and abs(float(d.x_train.std()) - 1) < 1e-5


@pytest.mark.parametrize("name, mean, std", [("mnist", 0.1307, 0.3081), ("fashion-mnist", 0.2860, 0.3530)])
def test_idx_datasets_from_shared_data(name, mean, std):
    if not (SHARED / name).is_dir():
        pytest.skip(f"{SHARED / name} is absent on this machine (set GENLAB_DATA)")
    d = load_dataset(name, data_dir=SHARED)
    assert d.x_train.shape == (60000, 1, 28, 28) and d.x_test.shape == (10000, 1, 28, 28)
    assert int(d.y_train.min()) == 0 and int(d.y_train.max()) == 9
    assert torch.bincount(d.y_test).min() >= 800
    # the published constants are the training set's statistics
    raw = d.x_train * std + mean
    assert abs(float(raw.mean()) - mean) < 1e-3 and abs(float(raw.std()) - std) < 1e-3
    assert abs(float(d.x_train.mean())) < 1e-3 and abs(float(d.x_train.std()) - 1) < 1e-3


def write_idx(folder: Path, n=5, rows=28, cols=28, magic_img=2051, magic_lab=2049, n_labels=None, truncate=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, (img, lab) in {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                              "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}.items():
        body = struct.pack(">IIII", magic_img, n, rows, cols) + rng.integers(0, 256, n * rows * cols).astype(
            np.uint8).tobytes()
        (folder / img).write_bytes(gzip.compress(body[:len(body) - truncate]))
        m = n if n_labels is None else n_labels
        (folder / lab).write_bytes(gzip.compress(struct.pack(">II", magic_lab, m) + bytes(i % 10 for i in range(m))))


def test_idx_reader_on_written_files(tmp_path):
    write_idx(tmp_path / "mnist")
    d = load_dataset("mnist", data_dir=tmp_path)
    assert d.x_train.shape == (5, 1, 28, 28) and d.y_train.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("kwargs, needle", [
    ({"magic_img": 1234}, "magic number 1234"),
    ({"truncate": 100}, "header promises"),
    ({"n_labels": 4}, "holds 5 images but"),
])
def test_corrupt_idx_files(tmp_path, kwargs, needle):
    write_idx(tmp_path / "fashion-mnist", **kwargs)
    with pytest.raises(DataError, match=needle) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path)
    assert str(tmp_path / "fashion-mnist") in str(err.value)


def test_not_gzip_and_missing(tmp_path):
    write_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a complete gzip file"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(DataError, match="not found in") as err:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    assert "--data-dir" in str(err.value) and "GENLAB_DATA" in str(err.value)


def test_genlab_data_environment_variable(tmp_path, monkeypatch):
    write_idx(tmp_path / "mnist", n=3)
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    assert load_dataset("mnist").x_train.shape[0] == 3
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="chosen by GENLAB_DATA"):
        load_dataset("mnist")


def write_cifar(folder: Path, records=7):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        rows = []
        for r in range(records):
            label = (i + r) % 10
            planes = np.concatenate([np.full(1024, 10, np.uint8), np.full(1024, 20, np.uint8),
                                     np.full(1024, 30 + r, np.uint8)])
            rows.append(np.concatenate([[label], planes]).astype(np.uint8))
        (folder / name).write_bytes(np.concatenate(rows).tobytes())


def test_cifar10_binary_reader(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-bin")
    d = load_dataset("cifar10", data_dir=tmp_path)
    assert d.x_train.shape == (35, 3, 32, 32) and d.x_test.shape == (7, 3, 32, 32)
    raw = d.x_train * torch.tensor((0.2470, 0.2435, 0.2616)).view(1, 3, 1, 1) + torch.tensor(
        (0.4914, 0.4822, 0.4465)).view(1, 3, 1, 1)
    px = (raw * 255).round()
    assert px[0, 0].unique().tolist() == [10] and px[0, 1].unique().tolist() == [20]  # R, G, B planes in order
    assert px[3, 2].unique().tolist() == [33]
    assert d.y_train[:3].tolist() == [0, 1, 2]


def test_cifar10_bad_size(tmp_path):
    write_cifar(tmp_path / "cifar10")
    with open(tmp_path / "cifar10" / "data_batch_3.bin", "ab") as f:
        f.write(b"\x00" * 10)
    with pytest.raises(DataError, match="data_batch_3.bin: .* not a positive multiple of the 3073-byte record"):
        load_dataset("cifar10", data_dir=tmp_path)


def test_synthetic():
    ts = load_dataset("teacher-student", options={"input_dim": 7, "n_train": 50})
    assert ts.x_train.shape == (50, 7) and ts.y_train.shape == (50, 1) and ts.loss == "mse"
    assert ts.task == "regression" and ts.labels_train is None
    assert torch.equal(ts.y_train, load_dataset("teacher-student", options={"input_dim": 7, "n_train": 50}).y_train)
    sp = load_dataset("sparse-regression", options={"input_dim": 30, "k": 4, "noise": 0.0})
    support = sp.info["support"]
    assert len(support) == 4
    # noiseless: y is exactly linear in the support coordinates
    x = sp.x_train[:, support]
    w, *_ = torch.linalg.lstsq(x, sp.y_train)
    assert float((x @ w - sp.y_train).abs().max()) < 1e-4


def test_subset_label_noise_and_targets():
    full = load_dataset("mnist1d")
    d = load_dataset("mnist1d", n_train=1000, label_noise=0.25, seed=5)
    assert torch.equal(d.x_train, full.x_train[:1000])
    changed = d.y_train != full.y_train[:1000]
    assert int(changed.sum()) == 250 == d.info["n_corrupted"]
    assert torch.equal(d.y_test, full.y_test)
    assert torch.equal(load_dataset("mnist1d", n_train=1000, label_noise=0.25, seed=5).y_train, d.y_train)
    m = load_dataset("mnist1d", n_train=10, loss="mse")
    assert m.y_train.shape == (10, 10) and torch.equal(m.y_train.argmax(1), full.y_train[:10])
    assert torch.equal(m.y_train.sum(1), torch.ones(10))


@pytest.mark.parametrize("kwargs, needle", [
    ({"name": "imagenet"}, "allowed: mnist1d, digits, mnist, fashion-mnist, cifar10, teacher-student"),
    ({"name": "mnist1d", "n_train": 0}, "n_train must be in 1..4000"),
    ({"name": "mnist1d", "n_train": 5000}, "n_train must be in 1..4000"),
    ({"name": "mnist1d", "label_noise": 1.5}, r"label_noise: must be in \[0, 1\]"),
    ({"name": "mnist1d", "loss": "hinge"}, "allowed: ce, mse"),
    ({"name": "teacher-student", "loss": "ce"}, "needs a classification dataset"),
    ({"name": "sparse-regression", "label_noise": 0.1}, "must be 0 for the regression dataset"),
    ({"name": "mnist1d", "options": {"width": 3}}, "allowed: seed, num_samples"),
    ({"name": "digits", "options": {"seed": 3}}, "allowed: none"),
])
def test_bad_arguments(kwargs, needle):
    name = kwargs.pop("name")
    with pytest.raises(DataError, match=needle):
        load_dataset(name, **kwargs)


def test_list_datasets():
    rows = list_datasets()
    assert [r["name"] for r in rows] == list(DATASETS) and len(rows) == 7
    assert all(r["available"] for r in rows)
