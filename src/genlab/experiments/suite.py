"""``genlab reproduce all``: every reproduction into one directory, and one HTML report of them all.

Each reproduction writes ``OUT/NAME/`` (its ``results.json`` and figures). A reproduction whose
``results.json`` is already there for the same setting (quick or full) is reused, so a suite that was stopped
resumes where it was; one that fails is reported on the page and in the exit status, and never stops the others.
``OUT/report.html`` is self-contained (figures embedded) and ``OUT/suite.json`` records verdicts and wall times.
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError, error_line
from genlab.jsonio import write_json_atomic

# the order of the page: the bound first, then noise, then curvature
SUITE_ORDER = ("compression", "sgld-noise", "noise-timescales", "sharpening", "vl-eos")

TITLES = {
    "compression": "1. Compression bounds (Lotfi et al. 2022)",
    "sgld-noise": "2. SGLD noise shape and the information-theoretic bound",
    "noise-timescales": "3. Noise injection time scales",
    "sharpening": "4. Progressive sharpening and the edge of stability (Cohen et al. 2021)",
    "vl-eos": "5. Variational learning at the edge of stability",
}



def expected_minutes(name: str, quick: bool) -> float:
    """The run time on 2 CPU cores a reproduction's setting declares (``SETTINGS[...].expected_minutes``)."""
    import importlib

    from genlab.experiments import REPRODUCTIONS

    return importlib.import_module(REPRODUCTIONS[name]).SETTINGS["quick" if quick else "full"].expected_minutes


def _reusable(path: Path, quick: bool) -> bool:
    from genlab.experiments.results import read_results

    if not (path / "results.json").is_file():
        return False
    try:
        return read_results(path).details.get("setting") == ("quick" if quick else "full")
    except GenlabError:
        return False


def reproduce_all(out: str | Path, quick: bool = False, quiet: bool = False,
                  names: tuple[str, ...] = SUITE_ORDER) -> dict[str, Any]:
    """Run every reproduction into ``out/NAME`` and write ``out/report.html``; returns the suite record.

    Args:
        out: output directory.
        quick: the small settings (all five in minutes on 2 CPU cores) instead of the full ones.
        quiet: no progress lines.
        names: which reproductions (default all five, in the report's order).
    """
    from genlab.experiments import REPRODUCTIONS, reproduce

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    record: dict[str, Any] = {"setting": "quick" if quick else "full", "results": {}}
    for name in names:
        if name not in REPRODUCTIONS:
            raise GenlabError(f"unknown reproduction {name!r}; allowed: {', '.join(REPRODUCTIONS)}")
    for name in names:
        path = out / name
        entry: dict[str, Any] = {"output": name}
        start = time.perf_counter()
        if _reusable(path, quick):
            entry["reused"] = True
            if not quiet:
                print(f"reproduce all: {name}: reusing {path / 'results.json'}", file=sys.stderr)
        else:
            if not quiet:
                print(f"reproduce all: {name} ({record['setting']}) ...", file=sys.stderr)
            try:
                reproduce(name, path, quick=quick, quiet=quiet)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 -- one failed reproduction is reported, the others still run
                entry["error"] = error_line(err)
                entry["traceback"] = traceback.format_exc()
        entry["wall_time_s"] = time.perf_counter() - start
        if "error" not in entry:
            from genlab.experiments.results import read_results

            r = read_results(path)
            entry.update(verdict=r.verdict, claim=r.claim,
                         wall_time_s=r.details.get("wall_time_s", entry["wall_time_s"]))
        record["results"][name] = entry
        record["wall_time_s"] = time.perf_counter() - t0
        write_json_atomic(out / "suite.json", record)
        if not quiet:
            print(f"reproduce all: {name}: {entry.get('verdict', 'FAILED: ' + entry.get('error', ''))} "
                  f"({entry['wall_time_s']:.0f} s)", file=sys.stderr)
    record["report"] = str(write_suite_report(out, record))
    write_json_atomic(out / "suite.json", record)
    return record


def write_suite_report(out: Path, record: dict[str, Any]) -> Path:
    """``out/report.html``: a summary table, then one section per reproduction (or its error)."""
    from genlab.report.html import Section, esc, table_html
    from genlab.report.pages import build_report, reproduction_section

    rows, sections = [], []
    for name, entry in record["results"].items():
        title = TITLES.get(name, name)
        anchor = name
        rows.append({"result": title, "verdict": entry.get("verdict", "failed to run"),
                     "wall time (s)": round(entry["wall_time_s"]),
                     "expected (min)": expected_minutes(name, record["setting"] == "quick"),
                     "reused": "yes" if entry.get("reused") else ""})
        if "error" in entry:
            sections.append(Section(title=title, anchor=anchor, verdict="failed to run").add(
                f"<p><b>The reproduction failed to run:</b> {esc(entry['error'])}</p>",
                f"<pre>{esc(entry.get('traceback', ''))}</pre>"))
        else:
            sec = reproduction_section(out / entry["output"], title=title)
            sec.anchor = anchor
            sections.append(sec)
    total = record.get("wall_time_s", 0.0)
    intro = (f"<p>Every result genlab rests on, reproduced on real data by <code>genlab reproduce all"
             f"{' --quick' if record['setting'] == 'quick' else ''}</code> ({esc(record['setting'])} settings, "
             f"{total / 60:.1f} min in this run; reused results count their original time). Each section gives "
             f"the paper's claim, our setting, the numbers, the figures and the verdict.</p>"
             + table_html(rows))
    return build_report(out, out / "report.html", title=f"genlab: the five results, reproduced ({record['setting']})",
                        intro=intro, sections=sections)
