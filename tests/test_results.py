"""The shared output format of every reproduction."""

import json

import pytest

from genlab.errors import GenlabError
from genlab.experiments import ReproductionResult, read_results, write_results


def make(tmp_path, **kw):
    (tmp_path / "figures").mkdir(exist_ok=True)
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG\r\n")
    base = dict(name="x", claim="Sharpness rises to 2/lr and hovers there.", verdict="held",
                metrics={"ratio": 0.97}, figures=["figures/a.png"])
    base.update(kw)
    return ReproductionResult(**base)


def test_round_trip(tmp_path):
    path = write_results(tmp_path, make(tmp_path))
    data = json.loads(path.read_text())
    assert set(data) >= {"claim", "verdict", "metrics", "figures"}
    assert read_results(tmp_path).metrics == {"ratio": 0.97}


@pytest.mark.parametrize("bad", [
    {"verdict": "mostly"},
    {"claim": ""},
    {"metrics": {}},
    {"figures": ["/abs/a.png"]},
    {"figures": ["figures/missing.png"]},
    {"figures": ["figures/a.pdf"]},
])
def test_rejects_malformed(tmp_path, bad):
    with pytest.raises(ValueError):
        write_results(tmp_path, make(tmp_path, **bad))


def test_read_corrupt(tmp_path):
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(GenlabError, match="not a valid reproduction result"):
        read_results(tmp_path)
