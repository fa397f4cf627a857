"""Report sections for everything genlab writes, and :func:`build_report`, which picks them by what a directory holds.

* a reproduction (``results.json``): claim, setting, seeds, wall time, the numbers, the figures, the verdict;
* a training run (``config.json``): settings, final figures, training curves, sharpness against 2/lr when
  tracked, the curvature spectrum when ``genlab curvature`` ran, noise accounting (SGLD's information and
  bound, injected noise, variational posterior);
* a certificate (``certificate.json``, from ``genlab bound``): the bound and its variants, errors, bits;
* a sweep (``sweep.json``): its table and the test accuracy of each run;
* a directory of these: one section each (``genlab reproduce all`` writes such a directory).
"""

from __future__ import annotations

import json
import platform
import socket
import time
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.report.html import (Section, esc, figure_html, figure_png, fmt, kv_html, page_html, table_html,
                                write_page)

KINDS = (("results.json", "reproduction"), ("certificate.json", "certificate"), ("sweep.json", "sweep"),
         ("config.json", "run"))


def directory_kind(path: Path) -> str | None:
    """``reproduction``, ``certificate``, ``sweep`` or ``run`` by the file a directory holds; ``None`` if none."""
    for name, kind in KINDS:
        if (path / name).is_file():
            return kind
    return None


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-") or "section"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise GenlabError(f"{path} cannot be read ({err})") from None


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (int, float, str, bool))


def _flatten(row: dict[str, Any]) -> dict[str, Any]:
    """Scalars of a row, with one level of nested dicts as ``outer.inner`` columns (lists of numbers kept)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if _scalar(v) or (isinstance(v, list) and all(isinstance(x, (int, float)) for x in v)):
            out[k] = v
        elif isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items() if _scalar(vv)})
    return out


def _find_seeds(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every setting whose name contains ``seed``, anywhere in nested details."""
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            key = f"{prefix}{k}"
            if "seed" in str(k).lower() and (_scalar(v) or isinstance(v, list)):
                found[key] = v
            elif isinstance(v, (dict, list)):
                found.update(_find_seeds(v, key + "."))
    elif isinstance(value, list):
        for i, v in enumerate(value[:50]):
            found.update(_find_seeds(v, f"{prefix}{i}."))
    return found


def _seed_summary(details: dict[str, Any]) -> str:
    seeds = _find_seeds(details)
    values = sorted({json.dumps(v) for v in seeds.values()})
    if not seeds:
        return "fixed by the defaults of the settings (see the settings)"
    if len(values) <= 6:
        return f"{', '.join(values)} (in {len(seeds)} setting{'s' if len(seeds) > 1 else ''})"
    return f"{len(values)} distinct values over {len(seeds)} settings"


# --------------------------------------------------------------------------------------- reproduction
def metrics_tables(metrics: dict[str, Any]) -> str:
    """The numbers a verdict rests on: ``group.name`` keys pivoted into one table (a row per group)."""
    plain = {k: v for k, v in metrics.items() if "." not in k}
    grouped: dict[str, dict[str, Any]] = {}
    for k, v in metrics.items():
        if "." in k:
            group, name = k.rsplit(".", 1)
            grouped.setdefault(group, {"": group})[name] = v
    blocks = []
    if plain:
        blocks.append(table_html([{"quantity": k, "value": v} for k, v in plain.items()]))
    if grouped:
        blocks.append(table_html(list(grouped.values())))
    return "".join(blocks)


def reproduction_section(path: Path, title: str | None = None) -> Section:
    """A reproduction's section: the paper's claim, our setting, seeds and time, numbers, figures, verdict."""
    from genlab.experiments.results import read_results

    r = read_results(path)
    d = r.details
    setting = d.get("setting", "?")
    sec = Section(title=title or f"{r.name} ({setting})", anchor=_anchor(r.name), verdict=r.verdict)
    sec.add(f"<p class='claim'><b>The paper's claim.</b> {esc(r.claim)}</p>")
    scalars = {k: v for k, v in d.items() if _scalar(v) and k != "wall_time_s"}
    wall = d.get("wall_time_s")
    sec.add("<h3>Our setting</h3>", kv_html({**scalars, "seeds": _seed_summary(d),
                                               "wall time": f"{wall:.0f} s" if isinstance(wall, (int, float))
                                               else "not recorded", "output": str(path)}))
    sec.add("<h3>Numbers</h3>", metrics_tables(r.metrics))
    for key, value in d.items():  # per-run / per-dataset detail tables
        rows = None
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            rows = [{"": k, **_flatten(v)} for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            rows = [_flatten(v) for v in value]
        if rows:
            sec.add(f"<h3>{esc(key.replace('_', ' '))}</h3>", table_html(rows))
    sec.add("<h3>Figures</h3>")
    for fig in r.figures:
        sec.add(figure_html(path / fig, caption=Path(fig).stem.replace("-", " ").replace("_", " ")))
    sec.add(f"<p><b>Verdict:</b> the claim <b>{esc(r.verdict)}</b> in this setting.</p>")
    return sec


# ------------------------------------------------------------------------------------------------ run
def _curves_figure(records: list[dict[str, Any]]) -> bytes | None:
    from genlab.report.figures import pyplot

    evals = [r for r in records if "train_loss" in r]
    if not evals:
        return None
    plt = pyplot()
    has_acc = any(r.get("train_accuracy") is not None for r in evals)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 6, 3.6))
    ax = axes[0] if has_acc else axes
    steps = [r["step"] for r in evals]
    for key, style in (("train_loss", "-"), ("test_loss", "--")):
        ax.plot(steps, [r.get(key) for r in evals], style, label=key.replace("_", " "))
    batch = [(r["step"], r["batch_loss"]) for r in evals if r.get("batch_loss") is not None]
    if batch:
        ax.plot(*zip(*batch), ":", alpha=.7, label="mean batch loss")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend()
    if has_acc:
        for key, style in (("train_accuracy", "-"), ("test_accuracy", "--")):
            axes[1].plot(steps, [r.get(key) for r in evals], style, label=key.replace("_", " "))
        axes[1].set(xlabel="step", ylabel="accuracy", title="accuracy")
        axes[1].legend()
    return figure_png(fig)


def _sharpness_figure(records: list[dict[str, Any]]) -> bytes | None:
    from genlab.report.figures import pyplot

    tracked = [r for r in records if r.get("sharpness") is not None]
    if not tracked:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    steps = [r["step"] for r in tracked]
    ax.plot(steps, [r["sharpness"] for r in tracked], label="sharpness (top Hessian eigenvalue)")
    if any(r.get("preconditioned_sharpness") is not None for r in tracked):
        ax.plot(steps, [r.get("preconditioned_sharpness") for r in tracked], label="preconditioned sharpness")
    if any(r.get("vl_threshold") is not None for r in tracked):
        ax.plot(steps, [r.get("vl_threshold") for r in tracked], ":", label="variational threshold")
    thresholds = [r.get("stability_threshold") for r in tracked]
    if any(t is not None for t in thresholds):  # the raw sharpness's threshold (GD, SGD, VGD) only
        ax.plot(steps, thresholds, "k--", label="stability threshold of the sharpness ((2 + 2 beta) / lr)")
    pre = [r.get("preconditioned_threshold") for r in tracked]
    if any(t is not None for t in pre):  # Adam, IVON: the threshold of the preconditioned sharpness
        ax.plot(steps, pre, "k:", label="threshold of the preconditioned sharpness")
    adaptive = any(t is not None for t in pre) and not any(t is not None for t in thresholds)
    ax.set(xlabel="step", ylabel="eigenvalue", yscale="log" if adaptive else "linear",
           title="preconditioned sharpness against its threshold" if adaptive else "sharpness against 2/lr")
    ax.legend()
    return figure_png(fig)


def _jacobian_figure(records: list[dict[str, Any]]) -> bytes | None:
    from genlab.report.figures import pyplot

    tracked = [r for r in records if r.get("jacobian_spec_max") is not None]
    if not tracked:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    steps = [r["step"] for r in tracked]
    for key, label in (("jacobian_spec_max", "max spectral norm"), ("jacobian_spec_mean", "mean spectral norm"),
                       ("jacobian_fro_mean", "mean Frobenius norm")):
        ax.plot(steps, [r.get(key) for r in tracked], label=label)
    ax.set(xlabel="step", ylabel="norm of d f(x) / d x", title="input-output Jacobian over the training set")
    ax.legend()
    return figure_png(fig)


def _information_figure(records: list[dict[str, Any]]) -> bytes | None:
    """The accounted information along the run and, when the bound has a test-error form (``negrea``,
    ``cmi``), that bound against the measured test error at each evaluation."""
    from genlab.report.figures import pyplot

    info = [(r["step"], r["sgld_information"]) for r in records if r.get("sgld_information") is not None]
    if not info:
        return None
    bound = [(r["step"], min(r["sgld_test_error_bound"], 1.0), 1 - r["test_accuracy"]) for r in records
             if r.get("sgld_test_error_bound") is not None and r.get("test_accuracy") is not None]
    plt = pyplot()
    fig, axes = plt.subplots(1, 2 if bound else 1, figsize=(11 if bound else 7, 3.4), squeeze=False)
    ax = axes[0][0]
    ax.plot(*zip(*info))
    ax.set(xlabel="step", ylabel="nats", title="SGLD: accumulated information (KL of the chain to its prior)")
    if bound:
        ax = axes[0][1]
        steps = [b[0] for b in bound]
        ax.plot(steps, [b[1] for b in bound], label="bound on the expected test error (one run)")
        sharp = [(r["step"], r["sgld_test_error_bound_sharp"]) for r in records
                 if r.get("sgld_test_error_bound_sharp") is not None]
        if sharp:
            ax.plot(*zip(*sharp), label="sharpened (one pair, 0-1 loss)")
        ax.plot(steps, [b[2] for b in bound], label="measured test error")
        ax.set(xlabel="step", ylabel="0-1 error", ylim=(0, 1), title="the bound along the run")
        ax.legend()
    return figure_png(fig)


NOISE_KEYS = ("noise", "noise_sigma", "label_noise", "dropout", "sgld_noise", "noise_trace", "noise_floor",
              "sgld_cov", "sgld_completion", "mc_samples", "posterior", "ess", "vgd_sigma", "subspace_noise")


def run_sections(path: Path, title: str | None = None) -> list[Section]:
    """A training run's sections: overview, training curves, sharpness, curvature spectrum, noise accounting."""
    from genlab.config import TrainConfig
    from genlab.train.run import is_fit_run, read_run_config, read_run_record
    from genlab.train.run_dir import RunDir

    rd = RunDir(path)
    summary = rd.read_json(rd.summary) if rd.summary.is_file() else {"status": "running (no summary yet)"}
    records = rd.read_metrics()
    name = title or f"run {path.name}"
    if is_fit_run(path):  # written by fit() on the user's own model: its record, flattened
        record = read_run_record(path)
        values = _fit_values(record)
        defaults = {}
        shown = dict(values)
        optimizer = values["optimizer"]
    else:
        config = read_run_config(path)
        defaults = TrainConfig().flat()
        values = config.flat()
        shown = {k: v for k, v in values.items()
                 if k in ("dataset", "model", "optimizer", "lr", "batch_size", "seed") or v != defaults.get(k)}
        optimizer = config.optimizer.name
    over = Section(title=name, anchor=_anchor(name))
    over.add(f"<p>Run directory <code>{esc(path)}</code>, status <b>{esc(summary.get('status'))}</b>.</p>",
             "<h3>Settings (those differing from the defaults, and the essentials)</h3>", kv_html(shown),
             "<h3>Final figures</h3>", kv_html({k: v for k, v in summary.items() if _scalar(v)}))
    curves = _curves_figure(records)
    if curves:
        over.add("<h3>Training curves</h3>", figure_html(curves, "loss and accuracy over training"))
    sections = [over]
    sharp = _sharpness_figure(records)
    if sharp:
        s = Section(title=f"{name}: sharpness", anchor=_anchor(name + "-sharpness"))
        last = next(r for r in reversed(records) if r.get("sharpness") is not None)
        s.add(figure_html(sharp, "top Hessian eigenvalue tracked during training, against 2/lr"),
              kv_html({k: last[k] for k in ("step", "sharpness", "stability_threshold", "preconditioned_sharpness",
                                            "preconditioned_threshold", "jacobian_spec_max", "jacobian_spec_mean",
                                            "jacobian_fro_max", "jacobian_fro_mean",
                                            "hessian_trace", "grad_norm") if last.get(k) is not None}))
        jac = _jacobian_figure(records)
        if jac:
            s.add(figure_html(jac, "input-output Jacobian norms tracked during training"))
        sections.append(s)
    curvature = path / "curvature.json"
    if curvature.is_file():
        c = _read_json(curvature)
        s = Section(title=f"{name}: curvature spectrum", anchor=_anchor(name + "-curvature"))
        s.add(kv_html({k: c.get(k) for k in ("loss", "num_params", "n", "stability_threshold", "trace",
                                             "trace_std_error", "grad_norm", "hvp_count", "wall_time_s")
                       if c.get(k) is not None}),
              table_html([{"rank": i + 1, "eigenvalue": v, "residual": (c.get("eigen_residuals") or [None] * 99)[i]}
                          for i, v in enumerate(c.get("top_eigenvalues", []))]))
        if "gauss_newton" in c:
            s.add("<h3>Gauss-Newton</h3>", kv_html(_flatten(c["gauss_newton"])))
        if "jacobian" in c:  # genlab curvature --jacobian: norms and the bound's terms
            s.add("<h3>Input-output Jacobian</h3>", kv_html(_flatten(c["jacobian"])))
        for fig in ("eigenvalues.png", "spectral_density.png"):
            if (path / "figures" / fig).is_file():
                s.add(figure_html(path / "figures" / fig, fig[:-4].replace("_", " ")))
        sections.append(s)
    noisy = {k: values[k] for k in NOISE_KEYS if k in values and values.get(k) != defaults.get(k)}
    is_sgld = optimizer in ("sgld", "gld", "SGLD")
    if noisy or is_sgld or optimizer in ("ivon", "vgd", "IVON", "VariationalGD"):
        s = Section(title=f"{name}: noise accounting", anchor=_anchor(name + "-noise"))
        s.add(f"<p>Optimizer <b>{esc(optimizer)}</b>; noise settings:</p>",
              kv_html(noisy or {"noise": "only the optimizer's own"}))
        if is_sgld:
            s.add(kv_html({k: summary.get(k) for k in (
                "sgld_bound", "sgld_information", "sgld_error_gap_bound", "sgld_bound_train_error",
                "sgld_test_error_bound", "sgld_test_error_bound_sharp", "sgld_prior_size", "sgld_bound_points",
                "sgld_bound_pairs",
                "sgld_pair_member_error", "sgld_pair_ghost_error", "sgld_heldout", "generalization_gap_accuracy",
                "sgld_bound_note") if k in summary}))
            info = _information_figure(records)
            if info:
                s.add(figure_html(info, "information accumulated by the SGLD chain (the bound's numerator)"))
        sections.append(s)
    return sections


def _fit_values(record: dict) -> dict:
    """A fit() record as flat settings: optimizer class and its first group's hyper-parameters, the loop's
    settings, the loss, the factories and each plugin's settings (noise injection as ``noise`` /
    ``noise_sigma``)."""
    opt = record.get("optimizer", {})
    group = (opt.get("groups") or [{}])[0]
    values = {"optimizer": opt.get("class", "?").rsplit(".", 1)[-1],
              **{f"optimizer.{k}": v for k, v in group.items() if _scalar(v)},
              "param_groups": len(opt.get("groups") or []),
              **{k: record.get(k) for k in ("seed", "full_batch", "batch_size", "steps", "epochs", "lr_schedule")},
              "loss": json.dumps(record.get("loss")),
              **{f"factory.{k}": v.get("factory") for k, v in (record.get("factories") or {}).items()}}
    for key, plugin in (record.get("plugins") or {}).items():
        settings = plugin.get("settings", {})
        if key == "noise":
            values.update(noise=settings.get("kind"), noise_sigma=settings.get("sigma"))
        else:
            values[f"plugin.{key}"] = ", ".join(f"{k}={v}" for k, v in settings.items()) or plugin.get("class")
    return values


# ------------------------------------------------------------------------------- certificate and sweep
def _original_sentence(c: dict) -> str:
    o = c.get("original")
    if not o:
        return ""
    return (f" <b>Certified after the fact</b>: the bound is for the compressed predictor fitted to "
            f"{esc(o.get('source'))}, not for that network itself; the two agree on "
            f"{100 * o['test_agreement']:.2f}% of the test set and {100 * o['train_agreement']:.2f}% of the bound's "
            f"points (the original's test error: {100 * o['test_error']:.2f}%; all three recomputed by "
            f"<code>genlab verify</code> from <code>original.safetensors</code>).")


def _buffers_sentence(c: dict) -> str:
    names = (c.get("buffers") or {}).get("names") or []
    if not names:
        return ""
    return (f" The message also codes the network's {len(names)} buffers (BatchNorm running statistics and the "
            f"like, {c['buffers']['levels']} levels each): they are part of the certified predictor, decoded by the "
            f"verifier, never recomputed from data.")


def certificate_section(path: Path, title: str | None = None) -> Section:
    """A compression certificate: the reported bound and its variants, errors, message bits, times."""
    c = _read_json(path / "certificate.json")
    name = title or f"certificate {path.name}"
    s = Section(title=name, anchor=_anchor(name))
    vacuous = ""
    if c.get("vacuous"):
        vacuous = (f" <b>This bound is vacuous</b>: it is not below the "
                   f"{100 * c['constant_predictor_error']:.2f}% error of always predicting the most frequent class.")
    s.add(f"<p>A <b>{esc(c.get('reported_bound'))}</b> bound of <b>{100 * c.get('bound', float('nan')):.2f}%</b> "
          f"on the error of the coded predictor, with probability {1 - c.get('delta', 0):.3g}; check it with "
          f"<code>genlab verify {esc(path)}</code>.{vacuous}{_buffers_sentence(c)}{_original_sentence(c)}</p>",
          kv_html({k: c.get(k) for k in ("n", "train_errors", "train_error", "test_error", "message_bits",
                                         "hyperparameter_bits", "total_bits", "delta", "constant_predictor_error",
                                         "vacuous") if k in c}),
          "<h3>Bounds</h3>", table_html([{"bound": k, "value": v} for k, v in c.get("bounds", {}).items()]),
          "<h3>Time (s), as recorded (genlab verify cannot re-check times)</h3>", kv_html(c.get("time_s", {})),
          "<h3>Pipeline settings, as recorded (not re-checked: the choices the predictor shows and those the "
          "grid declares are)</h3>",
          kv_html({k: v for k, v in (c.get("settings") or {}).items() if _scalar(v)}))
    return s


def _sweep_figure(rows: list[dict[str, Any]]) -> bytes | None:
    from genlab.report.figures import pyplot

    pts = [(r["run"], r["test_accuracy"]) for r in rows if isinstance(r.get("test_accuracy"), (int, float))]
    if not pts:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(pts)), 3.8))
    ax.bar(range(len(pts)), [p[1] for p in pts])
    ax.set_xticks(range(len(pts)), [p[0] for p in pts], rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="test accuracy", title="test accuracy of each run")
    return figure_png(fig)


def sweep_section(path: Path, title: str | None = None) -> Section:
    """A sweep: the status counts, its table, and each run's test accuracy."""
    t = _read_json(path / "sweep.json")
    name = title or f"sweep {t.get('sweep', path.name)}"
    s = Section(title=name, anchor=_anchor(name))
    s.add(kv_html({"backend": t.get("backend"), "jobs": t.get("jobs"), "wall time (s)": t.get("wall_time_s"),
                   **{f"runs {k}": v for k, v in t.get("counts", {}).items()}}), table_html(t.get("runs", [])))
    fig = _sweep_figure(t.get("runs", []))
    if fig:
        s.add(figure_html(fig, "test accuracy per run"))
    return s


# --------------------------------------------------------------------------------------------- the page
def machine_info() -> dict[str, Any]:
    """Machine and package versions, for the page's footer."""
    import importlib.metadata as md
    import os

    import torch

    cpu = platform.processor() or ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "host": socket.gethostname(),
                            "platform": platform.platform(), "cpu": cpu, "cpu cores": os.cpu_count(),
                            "torch threads": torch.get_num_threads(),
                            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
                            "python": platform.python_version()}
    for pkg in ("genlab", "torch", "numpy", "scipy", "scikit-learn", "matplotlib", "constriction"):
        try:
            info[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            info[pkg] = "not installed"
    return info


def sections_for(path: Path, title: str | None = None) -> list[Section]:
    """The sections of one directory (by its kind), or of each child directory genlab wrote."""
    kind = directory_kind(path)
    if kind == "reproduction":
        return [reproduction_section(path, title)]
    if kind == "certificate":  # and the stage runs genlab bound trained (subspace, quantized, prior)
        stages = [run_sections(child, f"{title or path.name}: {child.name} stage")
                  for child in sorted(p for p in path.iterdir() if p.is_dir()) if directory_kind(child) == "run"]
        return [certificate_section(path, title)] + [s for sections in stages for s in sections]
    if kind == "sweep":
        return [sweep_section(path, title)]
    if kind == "run":
        return run_sections(path, title)
    sections: list[Section] = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()):
        if directory_kind(child):
            sections += sections_for(child)
    return sections


def build_report(path: str | Path, out: str | Path | None = None, *, title: str | None = None,
                 intro: str = "", sections: list[Section] | None = None) -> Path:
    """Write one self-contained HTML page for a run, certificate, sweep or reproduction directory (or a
    directory of them); returns its path (default ``PATH/report.html``).

    Raises:
        GenlabError: ``path`` does not exist or holds nothing genlab wrote.
    """
    path = Path(path)
    if not path.is_dir():
        raise GenlabError(f"{path} is not a directory; give a run, certificate, sweep or reproduction directory")
    if sections is None:
        sections = sections_for(path)
    if not sections:
        raise GenlabError(f"{path} holds no genlab output (none of results.json, certificate.json, sweep.json, "
                          f"config.json, in it or in its subdirectories)")
    info = machine_info()
    footer = kv_html(info) + "<p class='muted'>Written by genlab; figures are embedded, the page needs no network.</p>"
    out = Path(out) if out else path / "report.html"
    return write_page(out, page_html(title or f"genlab report: {path.name}", sections, intro=intro, footer=footer))


__all__ = ["build_report", "sections_for", "directory_kind", "reproduction_section", "run_sections",
           "certificate_section", "sweep_section", "machine_info", "fmt"]
