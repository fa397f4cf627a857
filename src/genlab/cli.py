"""The ``genlab`` command: thin calls into the library functions of the same names.

User errors (bad flags, names, values, config files, data files, checkpoints)
print one line ``genlab: error: ...`` to stderr and exit non-zero (2 for bad
input, 1 for a diverged run, 130 for an interrupt), without a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from genlab import __version__
from genlab.errors import ConfigError, GenlabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="genlab: how well will a neural network generalize, and why.")


def _version(value: bool) -> None:
    if value:
        print(f"genlab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False,
          no_download: Annotated[bool, typer.Option(
              "--no-download", help="Never download a dataset's files (as GENLAB_NO_DOWNLOAD=1 does): a missing "
                                    "file is an error naming it; accepted by every command, anywhere on the line."
          )] = False,
          import_: Annotated[Optional[list[str]], typer.Option(
              "--import", help="Import MODULE (a dotted name or a .py file) first, so the models, datasets, losses "
                               "and plugins it registers exist; accepted by every command, anywhere on the "
                               "line, repeatable.")] = None) -> None:
    """genlab: how well will a neural network generalize, and why."""


Opt = typer.Option


def _out_path(value: str | None) -> Path | None:
    """An ``--out`` value as a path (``None``: not given); refused when empty, which a Path would take as the
    working directory."""
    if value is None:
        return None
    if value.strip() == "":
        raise ConfigError("--out is empty; give a directory (or leave --out out for the default)")
    return Path(value)


def _train(out: str, config: Optional[Path], overwrite: bool, quiet: bool, settings: dict) -> None:
    """Train a model; writes config.json, metrics.jsonl, summary.json, model.safetensors to --out.

    Every setting is a flag (generated from genlab.config.TrainConfig, one definition each) and a key of a
    --config file (flat, or in [data] [model] [optimizer] [run] [plugins.*] tables); flags override the file.
    """
    from genlab.config import TrainConfig, flatten_settings, merge_settings, read_config_file, validate_config
    from genlab.train import train

    flags = settings
    epochs, steps = settings.get("epochs"), settings.get("steps")
    file_values = flatten_settings(read_config_file(config)) if config else None
    if file_values and (epochs is not None or steps is not None):
        file_values = {k: v for k, v in file_values.items() if k not in ("epochs", "steps")}
    cfg = validate_config(TrainConfig, merge_settings(file_values, flags))
    run = train(cfg, out, quiet=quiet, overwrite=overwrite)
    s = run.summary

    def fig(key: str) -> str:  # accuracy is null for regression
        return "n/a" if s.get(key) is None else f"{s[key]:.4f}"

    print(f"{run.path}: {s['status']} after {s['steps']} steps ({s['wall_time_s']:.1f} s): "
          f"train loss {fig('train_loss')} acc {fig('train_accuracy')} | "
          f"test loss {fig('test_loss')} acc {fig('test_accuracy')}")


def _register_train() -> None:
    import inspect

    from genlab.cli_settings import with_settings_flags
    from genlab.config import TrainConfig

    kw = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        # a str, not a Path: typer would turn an empty --out into "." (the working directory)
        inspect.Parameter("out", kw, annotation=Annotated[str, Opt("--out", help="Run directory (resumed if it "
                                                                       "holds this run).")]),
        inspect.Parameter("config", kw, default=None, annotation=Annotated[Optional[Path], Opt(
            "--config", help="TOML or JSON file of settings; flags override.")]),
        inspect.Parameter("overwrite", kw, default=False, annotation=Annotated[bool, Opt(
            help="Discard a different run already in --out.")]),
        inspect.Parameter("quiet", kw, default=False, annotation=Annotated[bool, Opt(
            "--quiet", "-q", help="No progress output.")]),
    ]
    app.command("train")(with_settings_flags(TrainConfig, fixed, _train))


_register_train()


@app.command("curvature")
def curvature_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `genlab train`.")],
    top_k: Annotated[int, Opt(help="Top Hessian eigenvalues (Lanczos).")] = 5,
    tol: Annotated[float, Opt(help="Relative residual tolerance of each eigenvalue.")] = 1e-6,
    trace: Annotated[bool, Opt("--trace", help="Also the Hessian trace (Hutch++).")] = False,
    trace_matvecs: Annotated[int, Opt(help="Hessian-vector products for the trace.")] = 150,
    density: Annotated[bool, Opt("--density", help="Also the spectral density (SLQ) and its figure.")] = False,
    jacobian: Annotated[bool, Opt("--jacobian", help="Also input-output Jacobian norms.")] = False,
    gauss_newton: Annotated[bool, Opt("--gauss-newton", help="Also Gauss-Newton eigenvalues and split.")] = False,
    dtype: Annotated[str, Opt(help="float64 | float32 (precision of the computation).")] = "float64",
    seed: Annotated[int, Opt(help="Seed of probes and start vectors.")] = 0,
    device: Annotated[Optional[str], Opt(help="auto | cpu | cuda (default: the run's).")] = None,
    nproc: Annotated[int, Opt(help="Processes to shard the training points over (gloo; NCCL, one GPU each, "
                                   "with --device cuda).")] = 1,
    max_memory: Annotated[Optional[str], Opt(help="Budget per process beyond data and model, e.g. 2GB: one "
                                                  "batch's graph, cached graphs if they fit, the Lanczos basis "
                                                  "capped to the rest.")] = None,
    batch_size: Annotated[Optional[int], Opt(help="Examples per chunk of each product (default: the run's).")]
    = None,
) -> None:
    """Curvature of a trained run: writes RUN_DIR/curvature.json and figures (eigenvalues, density)."""
    from genlab.curvature.analysis import curvature

    r = curvature(run_dir, top_k=top_k, tol=tol, trace=trace, trace_matvecs=trace_matvecs, density=density,
                  jacobian=jacobian, gauss_newton=gauss_newton, dtype=dtype, seed=seed, device=device,
                  nproc=nproc, max_memory=max_memory, batch_size=batch_size)
    line = f"{run_dir}: top eigenvalues {', '.join(f'{v:.6g}' for v in r['top_eigenvalues'])}"
    if r.get("stability_threshold"):
        line += f" (2/lr = {r['stability_threshold']:.6g})"
    if r["trace"] is not None:
        line += f"; trace {r['trace']:.6g} +- {r['trace_std_error']:.2g}"
    if "gauss_newton" in r:
        line += f"; Gauss-Newton explains {100 * r['gauss_newton']['gauss_newton_fraction']:.1f}% of the top one"
    if "jacobian" in r:
        line += f"; max Jacobian spectral norm {r['jacobian']['train_jacobian_spec_max']:.4g}"
    mem = r.get("memory") or {}
    if mem.get("max_memory"):
        line += (f"; within {mem['max_memory'] / 1e6:.1f} MB: basis of at most {mem['basis_columns']} vectors, "
                 f"graphs {'cached' if mem['cache_graph'] else 'streamed'}")
    print(line + f"; {r['hvp_count']} Hessian-vector products; wrote {Path(run_dir) / 'curvature.json'}")


def _bound(out: str, config: Optional[Path], grid: Optional[list[str]], from_run: Optional[Path], quiet: bool,
           settings: dict) -> None:
    """Certify a compression bound: subspace training, quantization, arithmetic coding, certificate.json.

    Training flags are genlab train's (the subspace stage); --quant-*, --qat-*, --prior-* set the other stages.
    """
    from genlab.bounds.compression.certificate import DEFAULT_GRID
    from genlab.bounds.compression.pipeline import compression_bound
    from genlab.config import flatten_settings, merge_settings, parse_key_values, read_config_file
    from genlab.settings.bound import bound_config

    syntax = ("expected KEY=[v1,v2,...], a JSON list of the values searched over, e.g. --grid "
              "intrinsic_dim=[250,500,1000] --grid lr=[0.01,0.05]")
    missing = next((g for g in grid or [] if "=" not in g), None)
    if missing is not None:
        raise ConfigError(f"--grid {missing}: {syntax}")
    grid_values = parse_key_values(grid, "--grid")
    bad = next((k for k, v in grid_values.items() if not (isinstance(v, list) and v)), None)
    if bad is not None:
        raise ConfigError(f"--grid {bad}={grid_values[bad]!r}: {syntax}")
    file_values = read_config_file(config) if config else None
    if file_values and isinstance(file_values.get("train"), dict):  # {"train": {...}, stage settings}
        file_values = {**flatten_settings(file_values.pop("train")), **file_values}
    file_values = flatten_settings(file_values) if file_values else None
    cfg = bound_config(merge_settings(file_values, settings))
    if grid_values:
        cfg.grid = {**(cfg.grid or DEFAULT_GRID), **grid_values}
    c = compression_bound(cfg, out, from_run=from_run, quiet=quiet)
    print(f"{out}: {c['reported_bound']} bound {100 * c['bound']:.2f}%{_vacuous(c)} on {c['n']:,} points (train error "
          f"{100 * c['train_error']:.2f}%, test error {100 * c['test_error']:.2f}%, message {c['message_bits']:,} "
          f"bits{_buffers(c)} + {c['hyperparameter_bits']:.1f} hyper-parameter bits, {c['time_s']['total']:.0f} s); "
          f"wrote {Path(out) / 'certificate.json'}")
    if c["prior"]["kind"] == "transfer":
        print(f"prior centre trained on {c['prior']['dataset']} (a transfer prior: independent of these points; "
              f"genlab verify checks its file, not its training)")
    if c.get("original"):
        print(_original(c))


def _register_bound() -> None:
    import inspect

    from genlab.cli_settings import FlagGroup, with_settings_flags
    from genlab.config import TrainConfig
    from genlab.settings.bound import BOUND_BASE, STAGE_OWNED, BoundStages

    kw = inspect.Parameter.KEYWORD_ONLY
    fixed = [
        inspect.Parameter("out", kw, annotation=Annotated[str, Opt(
            "--out", help="Directory of the stage runs, certificate.json and message.bin.")]),
        inspect.Parameter("config", kw, default=None, annotation=Annotated[Optional[Path], Opt(
            "--config", help="TOML or JSON file of settings; flags override.")]),
        inspect.Parameter("grid", kw, default=None, annotation=Annotated[Optional[list[str]], Opt(
            help="Declared grid KEY=[v1,v2,...] (repeatable; replaces the default grid's key).")]),
        inspect.Parameter("from_run", kw, default=None, annotation=Annotated[Optional[Path], Opt(
            "--from-run", help="Quantize this complete subspace run instead of training one.")]),
        inspect.Parameter("quiet", kw, default=False, annotation=Annotated[bool, Opt(
            "--quiet", "-q", help="No progress output.")]),
    ]
    groups = [FlagGroup(TrainConfig, exclude=STAGE_OWNED, defaults=BOUND_BASE), FlagGroup(BoundStages)]
    app.command("bound")(with_settings_flags(groups, fixed, _bound))


_register_bound()


@app.command("verify")
def verify_cmd(
    certificate: Annotated[Path, typer.Argument(help="certificate.json (or its directory).")],
    data_dir: Annotated[Optional[str], Opt(help="Directory of dataset files (default $GENLAB_DATA).")] = None,
) -> None:
    """Rebuild a certified predictor from its certificate and message alone; recheck its error and bound."""
    from genlab.bounds.compression.verify import verify

    f = verify(certificate, data_dir=data_dir)
    print(f"{certificate}: verified -- {f['train_errors']} errors on {f['n']:,} points "
          f"({100 * f['train_error']:.2f}%), {f['message_bits']:,} message bits, bound {100 * f['bound']:.2f}%"
          f"{_vacuous(f)}")
    if f.get("original"):   # its agreement figures were recomputed by verify
        print(_original(f))


def _original(c: dict) -> str:
    """After the fact: what was certified, and how close it is to the network given."""
    o = c["original"]
    return (f"after the fact: the bound is for the compressed predictor, not for {o['source']} itself; they agree "
            f"on {100 * o['test_agreement']:.2f}% of the test set and {100 * o['train_agreement']:.2f}% of the "
            f"bound's points (the original's test error: {100 * o['test_error']:.2f}%)")


def _buffers(c: dict) -> str:
    """What the message codes besides w: the model's buffers (BatchNorm running statistics)."""
    names = (c.get("buffers") or {}).get("names") or []
    return f" (with {len(names)} buffers: BatchNorm statistics and the like)" if names else ""


def _vacuous(c: dict) -> str:
    """The label of a bound no better than always predicting the most frequent class."""
    if not c.get("vacuous"):
        return ""
    return (f" -- VACUOUS: not below the {100 * c['constant_predictor_error']:.2f}% error of always predicting the "
            f"most frequent class")


@app.command("reproduce")
def reproduce_cmd(
    name: Annotated[str, typer.Argument(help="Which result: sharpening | sgld-noise | noise-timescales | vl-eos | compression, or all (all five and OUT/report.html).")],
    quick: Annotated[bool, Opt("--quick", help="Small setting (minutes on 2 CPU cores).")] = False,
    out: Annotated[Optional[str], Opt("--out", help="Output directory (default reproductions/NAME[-quick]).")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Reproduce a paper's result on real data: writes OUT/results.json (claim, verdict, numbers) and figures.

    `all` runs the five into OUT/NAME (reusing finished ones) and writes the self-contained page OUT/report.html.
    """
    from genlab.errors import PartialFailure
    from genlab.experiments import reproduce

    out = _out_path(out) or Path("reproductions") / (name + ("-quick" if quick else ""))
    if name == "all":
        from genlab.experiments.suite import reproduce_all

        record = reproduce_all(out, quick=quick, quiet=quiet)
        for key, entry in record["results"].items():
            print(f"{key}: {entry.get('verdict', 'FAILED (' + entry.get('error', '') + ')')} "
                  f"({entry['wall_time_s']:.0f} s{', reused' if entry.get('reused') else ''})")
        print(f"wrote {record['report']} ({record['wall_time_s'] / 60:.1f} min)")
        failed = [k for k, e in record["results"].items() if "error" in e]
        if failed:
            raise PartialFailure(f"{len(failed)} reproduction(s) failed to run ({', '.join(failed)}); the report "
                                 f"shows their errors, rerun the same command to retry them")
        return
    r = reproduce(name, out, quick=quick, quiet=quiet)
    print(f"{name}: {r.verdict} -- {r.claim}")
    for key, value in r.metrics.items():
        if "." not in key:
            print(f"  {key}: {value:.4g}" if isinstance(value, float) else f"  {key}: {value}")
    print(f"wrote {Path(out) / 'results.json'} and {', '.join(r.figures)}")


@app.command("sweep")
def sweep_cmd(
    file: Annotated[Path, typer.Argument(help="Sweep file (TOML) with tables sweep, base, grid and an array runs (see README, Sweeps).")],
    out: Annotated[Optional[str], Opt("--out", help="Directory of the runs and the table (default: the file's, else runs/NAME).")] = None,
    jobs: Annotated[Optional[int], Opt("--jobs", "-j", help="Runs at a time on the local pool (default: the file's, else 1).")] = None,
    backend: Annotated[str, Opt(help="local (process pool) | ray.")] = "local",
    address: Annotated[Optional[str], Opt(help="Ray cluster address (default: start a local Ray instance).")] = None,
    cpus_per_run: Annotated[Optional[float], Opt(help="CPUs each run declares to Ray / torch threads per local run.")] = None,
    gpus_per_run: Annotated[Optional[float], Opt(help="GPUs each run declares to Ray (0).")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress lines.")] = False,
) -> None:
    """Run a grid of training runs; skips complete ones, resumes interrupted ones, writes OUT/sweep.csv and .json."""
    from genlab.errors import PartialFailure
    from genlab.sweep import read_sweep, run_sweep

    out_dir = _out_path(out)
    sweep = read_sweep(file)
    table = run_sweep(sweep, out_dir, jobs=jobs, backend=backend, address=address, cpus_per_run=cpus_per_run,
                      gpus_per_run=gpus_per_run, quiet=quiet)
    counts = table["counts"]
    where = Path(table["out"])
    print(f"sweep {sweep.name}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
          + f" ({table['wall_time_s']:.1f} s); wrote {where / 'sweep.csv'} and {where / 'sweep.json'}")
    bad = counts.get("failed", 0) + counts.get("diverged", 0)
    if bad:
        raise PartialFailure(f"{bad} of {len(table['runs'])} runs failed or diverged; their errors are in "
                             f"{where / 'sweep.csv'}")


@app.command("report")
def report_cmd(
    path: Annotated[Path, typer.Argument(help="A run, certificate, sweep or reproduction directory, or a directory of them.")],
    out: Annotated[Optional[str], Opt("--out", help="The HTML file (default PATH/report.html).")] = None,
) -> None:
    """One self-contained HTML page (figures embedded): curves, sharpness vs 2/lr, spectrum, bounds, noise."""
    from genlab.report import build_report

    print(f"wrote {build_report(path, _out_path(out))}")


@app.command("datasets")
def datasets_cmd() -> None:
    """List the named datasets with their sizes and where their files are."""
    from genlab.data import list_datasets

    rows = list_datasets()
    print(f"{'name':<18} {'task':<15} {'train':>7} {'test':>7} {'input':<12} {'out':>4}  available")
    for r in rows:
        shape = "x".join(str(s) for s in r["input_shape"])
        print(f"{r['name']:<18} {r['task']:<15} {r['n_train']:>7} {r['n_test']:>7} {shape:<12} "
              f"{r['output_dim']:>4}  {r['available']}")


data_app = typer.Typer(no_args_is_help=True, help="Dataset files: fetch them ahead of first use.")
app.add_typer(data_app, name="data")


@data_app.command("download")
def data_download_cmd(
    names: Annotated[list[str], typer.Argument(help="mnist, fashion-mnist, cifar10, or all.")],
    data_dir: Annotated[Optional[str], Opt(help="Download into this directory (default $GENLAB_DATA, else the "
                                                "user cache directory).")] = None,
    mirror: Annotated[Optional[list[str]], Opt(help="Base URL to fetch from instead of the built-in mirrors "
                                                    "(repeatable; as $GENLAB_DATA_MIRROR).")] = None,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fetch datasets' files from their official sources (mirrors as fallbacks), each checked against its
    published checksum before it is put in place; resumes an interrupted download; keeps files already there."""
    from genlab.data.download import fetch_dataset
    from genlab.data.sources import SOURCES

    if "all" in names:
        names = list(SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise ConfigError(f"data download: unknown dataset {unknown[0]!r}; allowed: {', '.join(SOURCES)}, all")
    for name in names:
        folder = fetch_dataset(name, data_dir, mirror=mirror, progress=False if quiet else None)
        print(f"{name}: {folder}")


@app.command("models")
def models_cmd(
    dataset: Annotated[str, Opt(help="Count parameters for this dataset's input shape.")] = "mnist",
) -> None:
    """List the named models with their defaults and parameter counts."""
    from genlab.data import DATASETS
    from genlab.models import list_models

    if dataset not in DATASETS:
        raise ConfigError(f"--dataset: unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    spec = DATASETS[dataset]
    print(f"parameter counts for {dataset} inputs {tuple(spec.input_shape)} -> {spec.output_dim} outputs")
    print(f"{'name':<8} {'params':>10}  {'defaults (w d a)':<18} description")
    for r in list_models(tuple(spec.input_shape), spec.output_dim):
        count = f"{r['parameters']:,}" if isinstance(r["parameters"], int) else "n/a"
        defaults = " ".join(f"{k[0]}={r[k]}" for k in ("width", "depth", "activation") if r.get(k) is not None)
        print(f"{r['name']:<8} {count:>10}  {defaults:<18} {r['description']}"
              + (f" [{r['note']}]" if r.get("note") else ""))


def _take_imports(args: list[str]) -> list[str]:
    """Import every ``--import MODULE`` (anywhere on the command line), apply ``--no-download`` (anywhere: it
    sets ``GENLAB_NO_DOWNLOAD=1``, which sweep workers inherit) and return the other arguments."""
    from genlab.registry import import_user_modules

    rest, modules, i = [], [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg == "--no-download":
            os.environ["GENLAB_NO_DOWNLOAD"] = "1"
            i += 1
            continue
        if arg == "--import":
            if i + 1 >= len(args):
                raise GenlabError("--import: expected a module name or a .py file")
            modules.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--import="):
            modules.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
        i += 1
    import_user_modules(modules)
    return rest


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``genlab`` console script; returns the exit status."""
    from typer import exceptions as tex

    import signal
    import threading

    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    previous = {}
    if threading.current_thread() is threading.main_thread():  # outside a training loop (which has its own)
        previous = {sig: signal.signal(sig, _stop_now) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = _take_imports(list(args))
        result = command.main(args=args, prog_name="genlab", standalone_mode=False)
        code = result if isinstance(result, int) else 0
        if code == 130:  # typer turns a KeyboardInterrupt into a silent exit status 130
            raise KeyboardInterrupt
    except tex.Exit as e:
        code = e.exit_code
    except (tex.Abort, KeyboardInterrupt):  # outside the training loop (which saves and says so itself)
        print("genlab: interrupted (exit 130); nothing was lost: rerun the same command to continue",
              file=sys.stderr)
        code = 130
    except GenlabError as e:
        print(f"genlab: error: {e}", file=sys.stderr)
        code = e.exit_code
    except OSError as e:  # unwritable --out, full disk, ...: the OS's reason and the path, on one line
        where = f": {e.filename}" if e.filename else ""
        print(f"genlab: error: {e.strerror or e}{where}", file=sys.stderr)
        code = 2
    except tex.TyperException as e:  # bad flags: unknown option, bad type, missing value
        hint = ""
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            hint = f" (see '{ctx.command_path} --help')"
        message = " ".join(e.format_message().split()) or "no command given"  # bare `genlab`, after its help
        print(f"genlab: error: {message}{hint}", file=sys.stderr)
        code = getattr(e, "exit_code", 2) or 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if argv is None:
        sys.exit(code)
    return code


def _stop_now(signum, frame):
    """Ctrl-C or SIGTERM outside a training loop (start-up, data loading, analysis): stop at once, exit 130.
    Raising KeyboardInterrupt there instead can land inside an import and leave a module half-initialised (a
    RecursionError later, not an exit); nothing is lost by exiting, as genlab writes every file atomically and a
    run directory's lock dies with the process."""
    os.write(2, b"genlab: interrupted (exit 130); every file written so far is intact: rerun the same command "
                b"to continue\n")
    os._exit(130)


if __name__ == "__main__":
    main()
