"""Run every benchmark and record its results in benchmarks/results/ (see BENCHMARKS.md)."""

from benchmarks import objective_speed, train_acceptance

if __name__ == "__main__":
    failed = []
    for module in (train_acceptance, objective_speed):
        print(f"== {module.__name__}")
        result = module.main()
        for target, met in result["targets"].items():
            print(f"   [{'met' if met else 'MISSED'}] {target}")
            if not met:
                failed.append(target)
    print("all targets met" if not failed else f"missed: {failed}")
