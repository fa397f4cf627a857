"""Datasets: shapes, normalisation, determinism, transforms and clear errors for bad files."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.data import DATASETS, list_datasets, load_dataset, resolve_data_dir
from genlab.data.mnist1d import templates
from genlab.data.synthetic import sparse_regression, teacher_student
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


def test_loaded_tensors_do_not_share_the_cache():
    a = load_dataset("mnist1d")
    expected_y, expected_x = int(a.y_train[0]), float(a.x_train[0, 0])
    a.y_train[0] = (expected_y + 1) % 10
    a.x_train[0, 0] = 1e6
    a.labels_test[0] = (int(a.labels_test[0]) + 1) % 10
    b = load_dataset("mnist1d")
    assert int(b.y_train[0]) == expected_y and float(b.x_train[0, 0]) == expected_x
    assert int(b.y_test[0]) != int(a.labels_test[0])


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
    assert d.y_train.shape == (1437,) and d.y_test.shape == (360,) and d.input_shape == (1, 8, 8)
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert d.y_test.tolist() == raw.target[1437:].tolist()  # the fixed split: the last 360
    restored = d.x_test * d.info["std"] + d.info["mean"]
    assert torch.allclose(restored * 16, torch.tensor(raw.images[1437:], dtype=torch.float32).unsqueeze(1),
                          atol=1e-4)


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


def test_truncated_gzip_stream_and_bad_labels(tmp_path):
    write_idx(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-30])  # the gzip stream itself is cut short
    with pytest.raises(DataError, match="not a complete gzip file") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value)
    write_idx(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(struct.pack(">II", 2049, 5) + bytes([0, 1, 12, 3, 4])))
    with pytest.raises(DataError, match="label 12 outside 0..9") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(labels) in str(err.value)
    write_idx(tmp_path / "mnist", rows=14, cols=14)
    with pytest.raises(DataError, match="holds 14x14 images; mnist needs 28x28"):
        load_dataset("mnist", data_dir=tmp_path)


def test_not_gzip_and_missing(tmp_path):
    write_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"this is not gzip")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: not a complete gzip file"):
        load_dataset("mnist", data_dir=tmp_path)
    with pytest.raises(DataError, match="not found in") as err:
        load_dataset("mnist", data_dir=tmp_path / "nowhere")
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "mnist") in message and "train-images-idx3-ubyte.gz" in message
    assert "chosen by data_dir argument" in message and "GENLAB_DATA or --data-dir" in message
    assert "\n" not in message


def test_genlab_data_environment_variable(tmp_path, monkeypatch):
    write_idx(tmp_path / "mnist", n=3)
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path))
    assert load_dataset("mnist").x_train.shape[0] == 3
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataError, match="chosen by GENLAB_DATA"):
        load_dataset("mnist")


def test_resolve_data_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("GENLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "explicit") == (tmp_path / "explicit", "data_dir argument (--data-dir)")
    assert resolve_data_dir() == (tmp_path / "env", "GENLAB_DATA")
    monkeypatch.delenv("GENLAB_DATA")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert resolve_data_dir() == ((tmp_path / "shared" / "data").resolve(), "default ../shared/data")


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


def test_cifar10_folders_and_missing_file(tmp_path):
    write_cifar(tmp_path / "cifar10" / "cifar-10-batches-bin", records=2)
    assert load_dataset("cifar10", data_dir=tmp_path).x_test.shape == (2, 3, 32, 32)
    (tmp_path / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin").unlink()
    with pytest.raises(DataError, match="file test_batch.bin not found in") as err:
        load_dataset("cifar10", data_dir=tmp_path)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-bin") in str(err.value)


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
    assert torch.allclose(w.flatten(), torch.tensor(sp.info["w_star"]), atol=1e-4)


def test_synthetic_ground_truth_and_noise_level():
    *_, w = sparse_regression(input_dim=50, k=7, seed=3)
    assert int((w != 0).sum()) == 7
    x_tr, y_tr, x_te, y_te, w = sparse_regression(n_train=4000, noise=0.5, seed=1)
    residual = torch.cat([y_tr, y_te]) - torch.cat([x_tr, x_te]) @ w.unsqueeze(1)
    assert abs(float(residual.std()) - 0.5) < 0.03
    x_tr, y_tr, _, _, teacher = teacher_student(input_dim=5, n_train=4000, output_dim=3, noise=0.2, seed=2)
    assert y_tr.shape == (4000, 3)
    clean = torch.tanh(x_tr @ teacher["W1"].T) @ teacher["W2"].T
    assert abs(float((y_tr - clean).std()) - 0.2) < 0.02
    assert float(clean.std()) > 0.2  # the teacher carries signal beyond the noise
    a = load_dataset("teacher-student", options={"seed": 1})
    assert not torch.equal(a.x_train, load_dataset("teacher-student").x_train)
    assert a.output_dim == 1 and a.num_classes is None and a.y_train.dtype == torch.float32


def test_info_is_json():
    for name in ["mnist1d", "digits", "teacher-student", "sparse-regression"]:
        d = load_dataset(name, n_train=10)
        json.dumps(d.info)
        assert "normalisation" in d.info and d.info["n_train"] == 10


def test_subset_label_noise_and_targets():
    full = load_dataset("mnist1d")
    d = load_dataset("mnist1d", n_train=1000, label_noise=0.25, seed=5)
    assert torch.equal(d.x_train, full.x_train[:1000])
    changed = d.y_train != full.y_train[:1000]
    assert int(changed.sum()) == 250 == d.info["n_corrupted"]  # every corrupted label differs from the original
    assert torch.equal(d.labels_train, d.y_train) and torch.equal(d.labels_test, full.y_test)
    assert not torch.equal(load_dataset("mnist1d", n_train=1000, label_noise=0.25, seed=6).y_train, d.y_train)
    assert load_dataset("mnist1d", n_train=7, label_noise=0.5).info["n_corrupted"] == 4  # round(3.5)
    assert int((load_dataset("mnist1d", label_noise=1.0).y_train != full.y_train).sum()) == 4000
    assert torch.equal(d.y_test, full.y_test)
    assert torch.equal(load_dataset("mnist1d", n_train=1000, label_noise=0.25, seed=5).y_train, d.y_train)
    m = load_dataset("mnist1d", n_train=10, loss="mse")
    assert m.y_train.shape == (10, 10) and torch.equal(m.y_train.argmax(1), full.y_train[:10])
    assert torch.equal(m.y_train.sum(1), torch.ones(10)) and m.y_train.dtype == torch.float32
    assert set(m.y_train.unique().tolist()) == {0.0, 1.0} and m.y_test.shape == (1000, 10)
    assert torch.equal(m.labels_train, full.y_train[:10]) and m.output_dim == 10
    r = load_dataset("sparse-regression", loss="mse")
    assert r.y_train.dtype == torch.float32 and r.y_train.shape == (200, 1) and r.labels_train is None


@pytest.mark.parametrize("kwargs, needle", [
    ({"name": "imagenet"}, "allowed: mnist1d, digits, mnist, fashion-mnist, cifar10, teacher-student"),
    ({"name": "mnist1d", "n_train": 0}, "n_train must be an integer >= 1"),
    ({"name": "mnist1d", "n_train": 5000},
     r"n_train \(mnist1d has 4000 training points\) must be an integer in 1..4000"),
    ({"name": "mnist1d", "n_train": 2.5}, r"n_train must be an integer >= 1 \(got 2.5\)"),
    ({"name": "mnist1d", "label_noise": 1.5}, r"label_noise must be in \[0, 1\] \(a finite number; got 1.5\)"),
    ({"name": "mnist1d", "label_noise": "a"}, "label_noise must be in .* got 'a'"),
    ({"name": "mnist1d", "seed": -1}, "seed must be an integer >= 0"),
    ({"name": "mnist1d", "loss": "hinge"}, "allowed: ce, mse"),
    ({"name": "teacher-student", "loss": "ce"}, "loss 'ce' needs a classification dataset"),
    ({"name": "sparse-regression", "label_noise": 0.1}, "label_noise must be 0 for the regression dataset"),
    ({"name": "mnist1d", "options": {"width": 3}},
     r"'width' is not an option of mnist1d; allowed: seed, num_samples \(defaults: seed=42, num_samples=5000\)"),
    ({"name": "digits", "options": {"seed": 3}}, "allowed: none"),
    ({"name": "mnist1d", "options": {"num_samples": 5}}, "dataset options for mnist1d: option num_samples .* >= 10"),
    ({"name": "mnist1d", "options": {"seed": "abc"}}, r"mnist1d: option seed must be an integer in 0..4294967295"),
    ({"name": "teacher-student", "options": {"n_train": 2.5}}, "teacher-student: option n_train must be an int"),
    ({"name": "teacher-student", "options": {"noise": -1}}, "teacher-student: option noise must be >= 0"),
    ({"name": "teacher-student", "options": {"input_dim": "3"}}, "teacher-student: option input_dim must be"),
    ({"name": "sparse-regression", "options": {"k": 200}}, "sparse-regression: option k must be an integer in 1..100"),
])
def test_bad_arguments(kwargs, needle):
    name = kwargs.pop("name")
    with pytest.raises(DataError, match=needle):
        load_dataset(name, **kwargs)


def test_integral_float_options_are_accepted():
    assert load_dataset("teacher-student", options={"n_train": 20.0}).x_train.shape == (20, 20)


def test_list_datasets(tmp_path):
    rows = list_datasets()
    assert [r["name"] for r in rows] == list(DATASETS) and len(rows) == 7
    assert set(DATASETS) == {"mnist1d", "digits", "mnist", "fashion-mnist", "cifar10", "teacher-student",
                             "sparse-regression"}
    assert all(r["available"] and r["where"] for r in rows)
    by_name = {r["name"]: r for r in list_datasets(tmp_path)}
    assert by_name["mnist1d"]["found"] is None and by_name["mnist1d"]["where"] == "generated"
    assert by_name["mnist"]["found"] is False and str(tmp_path / "mnist") in by_name["mnist"]["where"]
    assert by_name["mnist"]["needs_files"] and by_name["teacher-student"]["classes"] is None
    write_cifar(tmp_path / "cifar-10-batches-bin", records=1)
    row = {r["name"]: r for r in list_datasets(tmp_path)}["cifar10"]
    assert row["found"] is True and str(tmp_path / "cifar-10-batches-bin") in row["where"]
    json.dumps(rows)
