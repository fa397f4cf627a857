"""The README's Python examples run as written (docs move with code), and module doctests pass."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

from genlab.data import resolve_data_dir

ROOT = Path(__file__).resolve().parents[1]
SHARED = resolve_data_dir()[0]  # $GENLAB_DATA, else ../shared/data, as genlab itself looks


def readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture
def restore_registries():
    """The README registers a model and a dataset: take them out again afterwards."""
    from genlab.data.registry import DATASETS
    from genlab.models.registry import MODELS

    saved = [(reg, dict(dict.items(reg))) for reg in (MODELS, DATASETS)]
    yield
    for reg, items in saved:
        dict.clear(reg)
        dict.update(reg, items)


def test_readme_python_examples_run(tmp_path, monkeypatch, restore_registries):
    blocks = readme_python_blocks()
    assert blocks, "the README has Python examples"
    if any("fashion-mnist" in b for b in blocks) and not (SHARED / "fashion-mnist").is_dir():
        pytest.skip(f"the README example reads Fashion-MNIST, absent from {SHARED} (set GENLAB_DATA)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENLAB_DATA", str(SHARED.resolve()))
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "runs" / "c" / "summary.json").is_file()


@pytest.mark.parametrize("module", ["genlab.objective", "genlab.models", "genlab.data", "genlab.curvature",
                                    "genlab.curvature.operators"])
def test_module_doctests(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_readme_config_examples_validate():
    import tomllib

    from genlab.config import TrainConfig, validate_config
    from genlab.sweep import parse_sweep

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    assert blocks
    sweeps = 0
    for block in blocks:
        data = tomllib.loads(block)
        if "grid" in data or "base" in data:  # a sweep file: every run it expands to validates
            sweeps += 1
            assert parse_sweep(data).runs
        else:
            validate_config(TrainConfig, data)
    assert sweeps >= 1, "the README shows a sweep file"
