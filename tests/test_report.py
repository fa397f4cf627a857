"""HTML reports: self-contained pages (figures embedded, nothing fetched), the right sections per kind of
directory, `reproduce all` with a failing reproduction, and rendering in a real headless browser."""

import base64
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from genlab.cli import main
from genlab.config import TrainConfig
from genlab.experiments.results import ReproductionResult, write_results
from genlab.report import build_report, directory_kind
from genlab.train import train

PNG = b"\x89PNG\r\n\x1a\n"


class PageParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.sections, self.external, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a["src"])
        if tag == "section":
            self.sections.append(a["id"])
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_data(self, data):
        self.text.append(data)


def parse(path) -> PageParser:
    p = PageParser()
    p.feed(Path(path).read_text(encoding="utf-8"))
    for src in p.images:  # every figure is an embedded PNG that decodes
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == PNG
    assert not p.external, p.external
    return p


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(dataset="mnist1d", model="mlp", width=16, n_train=200, optimizer="gd", lr=0.2, steps=20,
                      eval_every=5, track_sharpness=5)
    train(cfg, out, quiet=True)
    assert main(["curvature", str(out), "--top-k", "2", "--density"]) == 0
    return out


def test_run_report_sections(tracked_run):
    path = build_report(tracked_run)
    assert path == tracked_run / "report.html"
    page = parse(path)
    text = " ".join(page.text)
    assert directory_kind(tracked_run) == "run"
    assert [s.rsplit("-", 1)[-1] for s in page.sections] == [tracked_run.name.lower(), "sharpness", "curvature"]
    # training curves, sharpness vs 2/lr, eigenvalues and density
    assert len(page.images) == 4
    assert "2/lr" in text and "Machine and versions" in text and "torch" in text


def test_noise_accounting_section_for_sgld(tmp_path):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", width=8, n_train=100, optimizer="sgld", lr=0.05, steps=6,
                      eval_every=3, sgld_noise="sqrt-gradcov", batch_size=20)
    train(cfg, tmp_path, quiet=True)
    page = parse(build_report(tmp_path, tmp_path / "r.html"))
    assert page.sections[-1].endswith("noise")
    text = " ".join(page.text)
    assert "sgld_error_gap_bound" in text and "sqrt-gradcov" in text


def fake_reproduction(out: Path, verdict="held") -> ReproductionResult:
    from genlab.report.figures import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure(fig, out / "figures" / "curve.png")
    result = ReproductionResult(name="toy", claim="A line goes down (Someone 2020).", verdict=verdict,
                                metrics={"slope": -1.0, "a.x": 1, "a.y": 2, "b.x": 3},
                                figures=["figures/curve.png"],
                                details={"setting": "custom", "seed": 7, "wall_time_s": 1.5,
                                         "runs": {"r1": {"lr": 0.1, "bounds": {"kl": 0.3}}}})
    write_results(out, result)
    return result


def test_reproduction_section(tmp_path):
    fake_reproduction(tmp_path)
    page = parse(build_report(tmp_path))
    text = " ".join(page.text)
    for needle in ("A line goes down (Someone 2020).", "held", "Our setting", "seeds", "7", "Numbers", "slope",
                   "bounds.kl", "wall time", "2 s"):
        assert needle in text, needle
    assert len(page.images) == 1


def test_reproduce_all_reports_a_failure_and_keeps_the_others(tmp_path, monkeypatch):
    import genlab.experiments as ex
    from genlab.experiments import suite

    def fake(name, out, quick=False, quiet=False):
        if name == "sgld-noise":
            raise RuntimeError("out of memory")
        r = fake_reproduction(Path(out), verdict="inconclusive" if name == "vl-eos" else "held")
        r.details["setting"] = "quick"
        r.name = name
        write_results(out, r)
        return r

    monkeypatch.setattr(ex, "reproduce", fake)
    record = suite.reproduce_all(tmp_path, quick=True, quiet=True)
    assert set(record["results"]) == set(suite.SUITE_ORDER)
    assert "out of memory" in record["results"]["sgld-noise"]["error"]
    page = parse(tmp_path / "report.html")
    assert page.sections == list(suite.SUITE_ORDER)
    assert len(page.images) == 4
    text = " ".join(page.text)
    assert "failed to run" in text and "out of memory" in text
    # rerun: the four finished ones are reused (same setting); the failed one is tried again
    calls = []
    monkeypatch.setattr(ex, "reproduce", lambda name, out, **kw: calls.append(name) or fake(name, out, **kw))
    record = suite.reproduce_all(tmp_path, quick=True, quiet=True)
    assert calls == ["sgld-noise"]
    assert sum(bool(e.get("reused")) for e in record["results"].values()) == 4


def test_sweep_report(tmp_path):
    from genlab.sweep import parse_sweep, run_sweep

    sweep = parse_sweep({"base": {"dataset": "mnist1d", "model": "mlp", "width": 8, "n_train": 100, "steps": 4},
                         "grid": {"seed": [0, 1]}})
    run_sweep(sweep, tmp_path, quiet=True)
    page = parse(build_report(tmp_path))
    assert page.sections == ["sweep-sweep"] and len(page.images) == 1
    assert "seed=1" in " ".join(page.text)


def test_report_cli_errors(capsys, tmp_path):
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a directory" in err[0]
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no genlab output" in capsys.readouterr().err


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def render(page: Path) -> dict[str, int]:
    """Open the page in headless Chromium; the figures it decoded and their smallest rendered width."""
    import re

    proc = subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,900",
                           "--virtual-time-budget=10000", "--dump-dom", page.absolute().as_uri()],
                          capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, proc.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0)))
    return {k: int(v) for k, v in attrs.items()}


@pytest.mark.skipif(chromium() is None and not os.environ.get("GENLAB_REQUIRE_BROWSER"),
                    reason="no headless browser (apt-get install chromium; .ci/run installs it and requires it)")
def test_page_renders_in_headless_chromium(tracked_run, tmp_path):
    assert chromium() is not None, "GENLAB_REQUIRE_BROWSER is set but no chromium is on PATH"
    got = render(build_report(tracked_run, tmp_path / "page.html"))
    assert got["figures-total"] == 4 and got["figures-loaded"] == 4
    assert got["min-figure-width"] >= 600  # readable: not shrunk below 600 CSS pixels
    bad = tmp_path / "bad.html"  # the check can fail: a page whose figure does not decode
    bad.write_text((tmp_path / "page.html").read_text().replace("base64,iVBOR", "base64,AAAA", 1))
    assert render(bad)["figures-loaded"] == 3


def test_suite_json_records_wall_time(tmp_path, monkeypatch):
    import genlab.experiments as ex
    from genlab.experiments import suite

    monkeypatch.setattr(ex, "reproduce", lambda name, out, **kw: fake_reproduction(Path(out)))
    record = suite.reproduce_all(tmp_path, quick=False, quiet=True, names=("compression",))
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert saved["setting"] == "full" and saved["results"]["compression"]["verdict"] == "held"
    assert saved["wall_time_s"] >= 0 and record["report"].endswith("report.html")


def test_certificate_report_with_its_stage_runs(tmp_path):
    from genlab.bounds.compression import BoundConfig, compression_bound

    out = tmp_path / "digits"
    settings = BoundConfig(dataset="digits", model="mlp", width=32, intrinsic_dim=50, epochs=4, quant_levels=5,
                           qat_epochs=1, lr=0.05, batch_size=64)
    cert = compression_bound(settings, out, quiet=True)
    page = parse(build_report(out))
    assert page.sections[0] == "certificate-digits"
    assert any(s.endswith("subspace-stage") for s in page.sections)
    assert any(s.endswith("quantized-stage") for s in page.sections)
    text = " ".join(page.text)
    assert f"{100 * cert['bound']:.2f}%" in text and "occam_kl" in text and "genlab verify" in text
    assert len(page.images) >= 2  # each stage's training curves


def test_reproduce_all_command_exit_status(tmp_path, monkeypatch, capsys):
    import genlab.experiments as ex

    def fake(name, out, quick=False, quiet=False):
        if name == "vl-eos":
            raise ValueError("diverged at step 3")
        r = fake_reproduction(Path(out))
        r.details["setting"] = "quick"
        write_results(out, r)
        return r

    monkeypatch.setattr(ex, "reproduce", fake)
    assert main(["reproduce", "all", "--quick", "--out", str(tmp_path), "-q"]) == 1
    out, err = capsys.readouterr()
    assert "vl-eos: FAILED (ValueError: diverged at step 3)" in out and f"wrote {tmp_path / 'report.html'}" in out
    assert err.strip() == ("genlab: error: 1 reproduction(s) failed to run (vl-eos); the report shows their errors, "
                           "rerun the same command to retry them")


def test_adam_run_report_shows_each_sharpness_against_its_threshold_and_the_jacobian(tmp_path):
    out = tmp_path / "adam"
    cfg = TrainConfig(dataset="mnist1d", model="mlp", width=16, n_train=200, optimizer="adam", lr=0.01,
                      batch_size=200, steps=12, eval_every=6, track_sharpness=6, track_jacobian=True)
    run = train(cfg, out, quiet=True)
    last = [r for r in run.metrics if "sharpness" in r][-1]
    assert last["stability_threshold"] is None and last["preconditioned_threshold"] == pytest.approx(
        (2 + 2 * 0.9) / ((1 - 0.9) * 0.01))
    assert main(["curvature", str(out), "--top-k", "1", "--jacobian"]) == 0
    html = build_report(out).read_text()
    assert "input-output Jacobian norms tracked during training" in html
    assert "Input-output Jacobian" in html and "preconditioned_threshold" in html


def test_cmi_bound_section_shows_the_bound_against_the_test_error(tmp_path):
    cfg = TrainConfig(dataset="mnist1d", model="mlp", width=8, n_train=100, optimizer="gld", lr=0.05, steps=4,
                      eval_every=2, sgld_bound="cmi")
    train(cfg, tmp_path, quiet=True)
    page = parse(build_report(tmp_path, tmp_path / "r.html"))
    text = " ".join(page.text)
    assert "sgld_test_error_bound" in text and "sgld_bound_pairs" in text and "cmi" in text
    assert "sgld_test_error_bound_sharp" in text  # one bound pair (the default): the sharpened bound too
    assert any("information accumulated" in t for t in page.text)
