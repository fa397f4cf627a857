"""Run every benchmark, record its results in benchmarks/results/*.json and rewrite BENCHMARKS.md."""

import json
import sys
from pathlib import Path

from benchmarks import (compression_bounds, compression_levers, compression_own_networks, curvature_scale,
                        curvature_scale_trend, curvature_speed,
                        hvp_streaming, ivon_step,
                        kill_resume_stress, objective_speed, reproduce_all_quick, sgld_cmi_bounds, sgld_step,
                        sweep_scaling, tracking_overhead, train_acceptance)
from benchmarks.common import RESULTS

MODULES = (train_acceptance, objective_speed, hvp_streaming, curvature_speed, curvature_scale, curvature_scale_trend,
           tracking_overhead, sgld_step,
           sgld_cmi_bounds, ivon_step, sweep_scaling, reproduce_all_quick, compression_bounds, compression_own_networks, compression_levers,
           kill_resume_stress)


def write_summary() -> Path:
    """BENCHMARKS.md: for each recorded result, its machine, date, targets and figures."""
    lines = ["# Benchmark results", "", "Written by `make bench` (`python -m benchmarks`) from "
             "`benchmarks/results/*.json`; speed figures are ratios against a reference measured in the same run.",
             ""]
    for module in MODULES:
        name = module.__name__.split(".")[-1]
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text())
        m = data["machine"]
        lines += [f"## {name}", "", (module.__doc__ or "").strip(), "",
                  f"Machine: {m['processor']}, {m['cpu_count']} CPUs, torch {m['torch']} "
                  f"({m['torch_threads']} threads), {m['platform']}; taken {m['date']}.", ""]
        source = data["figures"].get("recomputed_from") if isinstance(data["figures"], dict) else None
        if source:  # a bound recomputed from recorded runs (the module's --recompute)
            lines += [f"Aggregates recomputed from the runs recorded {source['machine']['date']} (the runs, their "
                      "settings and timings are those of that date).", ""]
        lines += ["Targets:", ""]
        lines += [f"- [{'x' if met else ' '}] {t}" for t, met in data["targets"].items()]
        lines += ["", "Figures:", "", "```json", json.dumps(data["figures"], indent=2), "```", ""]
    out = Path(__file__).parent / "BENCHMARKS.md"
    out.write_text("\n".join(lines))
    return out


if __name__ == "__main__":
    missed = []
    only = sys.argv[1:]
    for module in MODULES:
        if only and module.__name__.split(".")[-1] not in only:
            continue
        print(f"== {module.__name__}")
        result = module.main()
        for target, met in result["targets"].items():
            print(f"   [{'met' if met else 'MISSED'}] {target}")
            if not met:
                missed.append(target)
    print(f"summary written to {write_summary()}")
    print("all targets met" if not missed else f"missed: {missed}")
