"""Dataset downloads, served by a loopback HTTP server the tests start themselves: a download that succeeds,
one interrupted and resumed (within a call and across processes), checksum failures (refused, nothing left
in place), a mirror that is down, no server at all, archives, and the published checksums against the files
in ../shared/data."""

import gzip
import hashlib
import io
import struct
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from genlab.cli import main
from genlab.data import load_dataset, resolve_data_dir
from genlab.data import sources as src
from genlab.data.download import check_file, fetch_dataset, md5_of
from genlab.errors import DataError

SHARED = resolve_data_dir()[0]
IDX = [f.name for f in src.SOURCES["mnist"].files]


class Server:
    """Serves ``files`` (URL path -> bytes) with ``Range`` support. ``cut`` (path -> byte count) drops the
    connection after that many bytes on the next request for the path (once); ``down`` paths answer 503;
    ``ignore_range`` answers every request with the whole file. ``log`` records (path, Range header)."""

    def __init__(self):
        self.files, self.cut, self.down, self.log = {}, {}, set(), []
        self.ignore_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.log.append((self.path, self.headers.get("Range")))
                prefix = "/" + self.path.strip("/").split("/")[0]
                if prefix in server.down:
                    self.send_error(503, "down for maintenance")
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start, status = 0, 200
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = server.cut.pop(self.path, None)
                self.wfile.write(body[start:] if cut is None else body[start:start + cut])
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def downloads(monkeypatch):
    """Downloads allowed (the test suite forbids them elsewhere) and no user-wide mirror setting."""
    monkeypatch.delenv("GENLAB_NO_DOWNLOAD", raising=False)
    monkeypatch.delenv("GENLAB_DATA_MIRROR", raising=False)


def idx_files(n=64, seed=0) -> dict[str, bytes]:
    """A small MNIST-format dataset: the four gz files' bytes, images random enough not to compress away."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    out = {}
    for split in ("train", "t10k"):
        out[f"{split}-images-idx3-ubyte.gz"] = gzip.compress(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        out[f"{split}-labels-idx1-ubyte.gz"] = gzip.compress(struct.pack(">II", 2049, n) + labels.tobytes())
    return out


def publish(monkeypatch, files: dict[str, bytes], dataset="mnist", content=False):
    """Make ``files`` the published ones of ``dataset`` (their MD5s in the checksum table)."""
    md5 = lambda b: hashlib.md5(b).hexdigest()  # noqa: E731
    old = src.SOURCES[dataset]
    remote = tuple(src.RemoteFile(n, "0" * 32 if content else md5(b), md5(gzip.decompress(b)) if content else None)
                   for n, b in files.items())
    monkeypatch.setitem(src.SOURCES, dataset, src.DatasetSource(dataset, old.folder, remote, old.mirrors,
                                                                "this test", old.members))


def serve(server, files, mirror="/m1"):
    for name, body in files.items():
        server.files[f"{mirror}/{name}"] = body


@pytest.fixture
def files(downloads, monkeypatch):
    """A small MNIST-format dataset made the published one (downloads allowed); returns its files' bytes."""
    files = idx_files()
    publish(monkeypatch, files)
    return files


@pytest.fixture
def served(files, server):
    """The published files, served under ``/m1``."""
    serve(server, files)


def test_download_on_first_use_then_load(files, served, tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("GENLAB_DATA_MIRROR", server.url + "/m1")
    d = load_dataset("mnist", data_dir=tmp_path)  # first use: fetched, checked, then read
    assert d.x_train.shape == (64, 1, 28, 28) and d.y_train.tolist()[:3] == [0, 1, 2]
    for name, body in files.items():
        assert (tmp_path / "mnist" / name).read_bytes() == body
    assert not list((tmp_path / "mnist").glob(".*.part"))
    assert "checksum verified" in capsys.readouterr().err
    requests = len(server.log)
    load_dataset("mnist", data_dir=tmp_path)  # second use: no request
    assert len(server.log) == requests == 4


def test_interrupted_download_resumes_with_range(files, served, tmp_path, server):
    big = "train-images-idx3-ubyte.gz"
    half = len(files[big]) // 2
    server.cut[f"/m1/{big}"] = half  # the connection drops halfway through
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=False)
    assert (tmp_path / "mnist" / big).read_bytes() == files[big]
    assert (f"/m1/{big}", None) in server.log and (f"/m1/{big}", f"bytes={half}-") in server.log


def test_partial_file_from_a_killed_process_is_resumed(files, served, tmp_path, server, monkeypatch):
    big = "train-images-idx3-ubyte.gz"
    (tmp_path / "mnist").mkdir()
    part = tmp_path / "mnist" / f".{big}.part"
    part.write_bytes(files[big][:1000])  # what a killed download left
    monkeypatch.setenv("GENLAB_NO_DOWNLOAD", "1")
    with pytest.raises(DataError, match="not found"):  # a loader never reads the .part
        load_dataset("mnist", data_dir=tmp_path)
    monkeypatch.delenv("GENLAB_NO_DOWNLOAD")
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=False)
    assert [r for p, r in server.log if p.endswith(big)] == ["bytes=1000-"]
    assert (tmp_path / "mnist" / big).read_bytes() == files[big] and not part.exists()


def test_foreign_partial_file_is_discarded_and_fetched_again(files, served, tmp_path, server):
    big = "train-images-idx3-ubyte.gz"
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / f".{big}.part").write_bytes(b"x" * 1000)  # not a prefix of the file
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=False)
    assert [r for p, r in server.log if p.endswith(big)] == ["bytes=1000-", None]
    assert (tmp_path / "mnist" / big).read_bytes() == files[big]


def test_server_ignoring_range_restarts_from_zero(files, served, tmp_path, server):
    server.ignore_range = True
    big = "train-images-idx3-ubyte.gz"
    server.cut[f"/m1/{big}"] = 500
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=False)
    assert (tmp_path / "mnist" / big).read_bytes() == files[big]


@pytest.mark.parametrize("damage", ["flipped byte", "truncated"])
def test_checksum_failure_is_refused_and_nothing_is_left(files, tmp_path, server, damage):
    bad = dict(files)
    body = bad["t10k-labels-idx1-ubyte.gz"]
    bad["t10k-labels-idx1-ubyte.gz"] = (body[:20] + bytes([body[20] ^ 1]) + body[21:] if damage == "flipped byte"
                                        else body[: len(body) // 2])
    serve(server, bad)
    with pytest.raises(DataError) as err:
        fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=False)
    message = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and "checksum mismatch" in message and "\n" not in message
    assert not (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list((tmp_path / "mnist").glob(".*.part"))
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").read_bytes() == files["train-images-idx3-ubyte.gz"]


def test_first_mirror_down_next_one_used(files, tmp_path, server, capsys):
    serve(server, files, "/m1")
    serve(server, files, "/m2")
    server.down.add("/m1")
    code = main(["data", "download", "mnist", "--data-dir", str(tmp_path), "--mirror", server.url + "/m1",
                 "--mirror", server.url + "/m2", "--quiet"])
    assert code == 0
    assert all((tmp_path / "mnist" / n).read_bytes() == b for n, b in files.items())
    assert {p.split("/")[1] for p, _ in server.log} == {"m1", "m2"}
    err = capsys.readouterr().err
    assert err.count("/m2/") == 4 and "fetched" in err


def test_a_mirror_serving_wrong_files_is_passed_over(files, tmp_path, server):
    serve(server, idx_files(seed=1), "/m1")  # well-formed, but not the published files
    serve(server, files, "/m2")
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1", server.url + "/m2"], progress=False)
    assert all((tmp_path / "mnist" / n).read_bytes() == b for n, b in files.items())


def test_no_server_one_line_exit_2(tmp_path, downloads, capsys, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("GENLAB_DATA_MIRROR", f"http://127.0.0.1:{port}/")
    for args in (["data", "download", "mnist", "--data-dir", str(tmp_path)],
                 ["train", "--dataset", "mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "run"),
                  "--steps", "1"]):
        code = main(args)
        err = capsys.readouterr().err
        lines = [x for x in err.splitlines() if x.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("genlab: error: mnist: cannot download"), err
        for name in IDX:
            assert name in lines[0]
        assert "Connection refused" in lines[0] and str(tmp_path / "mnist") in lines[0]
    assert not list((tmp_path / "mnist").iterdir()) or \
        [p.name for p in (tmp_path / "mnist").iterdir()] == [".genlab-download.lock"]


def test_no_download_forbids_fetching(files, served, tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("GENLAB_DATA_MIRROR", server.url + "/m1")
    code = main(["train", "--no-download", "--dataset", "mnist", "--data-dir", str(tmp_path),
                 "--out", str(tmp_path / "run"), "--steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "not found" in err and "downloads are off" in err and server.log == []


def test_present_files_are_used_as_they_are(files, served, tmp_path, server):
    (tmp_path / "mnist").mkdir()
    mine = idx_files(n=10, seed=3)  # the user's own copy: not the published bytes
    for name, body in mine.items():
        (tmp_path / "mnist" / name).write_bytes(body)
    assert fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"]) == tmp_path / "mnist"
    assert server.log == [] and load_dataset("mnist", data_dir=tmp_path).x_train.shape[0] == 10


def cifar_archive(extra_members=True) -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, data, **kw):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            for k, v in kw.items():
                setattr(info, k, v)
            tar.addfile(info, io.BytesIO(data))

        for member in src.SOURCES["cifar10"].members:
            records = rng.integers(0, 256, size=(5, 3073), dtype=np.uint8)
            records[:, 0] %= 10
            add(member, records.tobytes())
        if extra_members:
            add("cifar-10-batches-bin/readme.html", b"<html>")
            add("../escaped.bin", b"outside")
            link = tarfile.TarInfo("cifar-10-batches-bin/link")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
    return buf.getvalue()


def test_cifar10_archive_extracts_only_its_batch_files(tmp_path, server, downloads, monkeypatch):
    archive = cifar_archive()
    publish(monkeypatch, {"cifar-10-binary.tar.gz": archive}, "cifar10")
    server.files["/c/cifar-10-binary.tar.gz"] = archive
    server.cut["/c/cifar-10-binary.tar.gz"] = len(archive) // 3
    folder = fetch_dataset("cifar10", tmp_path / "data", mirror=[server.url + "/c"], progress=False)
    assert folder == tmp_path / "data" / "cifar-10-batches-bin"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == \
        sorted(src.SOURCES["cifar10"].members.values())
    assert not (tmp_path / "escaped.bin").exists() and not (tmp_path / "data" / "cifar-10-binary.tar.gz").exists()
    d = load_dataset("cifar10", data_dir=tmp_path / "data")
    assert d.x_train.shape == (25, 3, 32, 32) and d.x_test.shape == (5, 3, 32, 32)


def test_cifar10_archive_lacking_a_member_is_refused(tmp_path, server, downloads, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-bin/data_batch_1.bin")
        info.size = 3073
        tar.addfile(info, io.BytesIO(bytes(3073)))
    publish(monkeypatch, {"cifar-10-binary.tar.gz": buf.getvalue()}, "cifar10")
    server.files["/c/cifar-10-binary.tar.gz"] = buf.getvalue()
    with pytest.raises(DataError, match="lacks cifar-10-batches-bin/data_batch_2.bin"):
        fetch_dataset("cifar10", tmp_path, mirror=[server.url + "/c"], progress=False)


def test_unknown_dataset_for_download(capsys):
    assert main(["data", "download", "digits"]) == 2
    assert "unknown dataset 'digits'; allowed: mnist, fashion-mnist, cifar10, all" in capsys.readouterr().err


def test_datasets_listing_says_where_a_download_goes(tmp_path, downloads, monkeypatch):
    from genlab.data import list_datasets

    row = next(r for r in list_datasets(tmp_path) if r["name"] == "cifar10")
    assert row["available"] == f"not here yet: fetched on first use into {tmp_path / 'cifar-10-batches-bin'}"
    monkeypatch.setenv("GENLAB_NO_DOWNLOAD", "1")
    row = next(r for r in list_datasets(tmp_path) if r["name"] == "cifar10")
    assert row["available"].startswith("missing from")


# --- the published checksums against the real files -----------------------------------------------------

def test_checksum_table_is_the_published_one():
    """The MD5s as published (torchvision's MNIST list, Fashion-MNIST's README table, CIFAR-10's page)."""
    mnist = {f.name: f.md5 for f in src.SOURCES["mnist"].files}
    assert mnist["train-images-idx3-ubyte.gz"] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert mnist["t10k-labels-idx1-ubyte.gz"] == "ec29112dd5afa0611ce80d1b7f02629c"
    fashion = {f.name: f.md5 for f in src.SOURCES["fashion-mnist"].files}
    assert fashion == {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
                       "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
                       "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}
    assert src.SOURCES["cifar10"].files[0].md5 == "c32a1d4ab5d03f1284b67883e8d87530"


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_shared_data_matches_the_published_checksums(dataset):
    """../shared/data holds re-compressed copies: their gz bytes differ from the distributed ones, but the
    decompressed content of every file matches the checksum table, which is what the check accepts."""
    folder = SHARED / dataset
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent on this machine (set GENLAB_DATA)")
    for remote in src.SOURCES[dataset].files:
        path = folder / remote.name
        assert md5_of(path, decompress=True) == remote.content_md5, path
        assert check_file(path, remote) is None
    wrong = src.RemoteFile("x", "0" * 32, "1" * 32)
    assert check_file(folder / IDX[0], wrong).startswith("checksum mismatch")


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
def test_download_of_the_shared_copies_with_the_real_checksums(tmp_path, server, downloads, dataset):
    folder = SHARED / dataset
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent on this machine (set GENLAB_DATA)")
    for name in IDX:
        server.files[f"/real/{name}"] = (folder / name).read_bytes()
    got = fetch_dataset(dataset, tmp_path, mirror=[server.url + "/real"], progress=False)
    assert all(md5_of(got / n) == md5_of(folder / n) for n in IDX)
    d = load_dataset(dataset, data_dir=tmp_path)
    assert d.x_train.shape == (60000, 1, 28, 28)


def test_progress_bar_when_asked(tmp_path, server, downloads, monkeypatch, capsys):
    files = idx_files(n=2000)
    publish(monkeypatch, files)
    serve(server, files)
    fetch_dataset("mnist", tmp_path, mirror=[server.url + "/m1"], progress=True)
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz:" in err and "%|" in err and "B/s" in err  # tqdm, bytes per second
