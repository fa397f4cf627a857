"""CUDA paths (skipped where no GPU is present; CI has none, a lent GPU machine runs them).

They check that the device-agnostic code really is: the Objective gives the same numbers on CUDA as on
CPU, a CUDA run resumes exactly, and a run trained on CUDA loads on the CPU.
"""

import pytest
import torch
from safetensors.torch import load_file

from genlab.config import TrainConfig
from genlab.objective import Objective
from genlab.train import Callback, load_run, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_objective_cuda_matches_cpu():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).double()
    x, y = torch.randn(300, 6, dtype=torch.float64), torch.randint(0, 4, (300,))
    cpu = Objective(model, x, y, loss="ce", batch_size=64)
    v = {k: torch.randn_like(p) for k, p in cpu.params().items()}
    ref_hv, ref_ps, ref_j = cpu.hvp(v), cpu.per_sample_grads(), cpu.input_jacobian()
    gpu = Objective(model.cuda(), x, y, loss="ce", batch_size=64)
    assert gpu.x.is_cuda
    hv = gpu.hvp({k: t.cuda() for k, t in v.items()})
    ps = gpu.per_sample_grads()
    for k in ref_hv:
        torch.testing.assert_close(hv[k].cpu(), ref_hv[k], atol=1e-10, rtol=1e-8)
        torch.testing.assert_close(ps[k].cpu(), ref_ps[k], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(gpu.input_jacobian().cpu(), ref_j, atol=1e-10, rtol=1e-8)


class Crash(Callback):
    class Boom(Exception):
        pass

    def on_step_end(self, state):
        if state.step == 25:
            raise self.Boom


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_cuda_run_resumes_exactly_and_loads_on_cpu(tmp_path, model):
    cfg = TrainConfig(dataset="mnist1d", n_train=1000, model=model, dropout=0.1, optimizer="adam", lr=1e-3,
                      batch_size=50, steps=40, checkpoint_every=10, device="cuda", seed=2)
    run = train(cfg, tmp_path / "straight", quiet=True)
    assert next(run.model.parameters()).is_cuda
    with pytest.raises(Crash.Boom):
        train(cfg, tmp_path / "crashed", callbacks=[Crash()], quiet=True)
    train(cfg, tmp_path / "crashed", quiet=True)
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(
        str(tmp_path / "crashed" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    on_cpu = load_run(tmp_path / "straight", device="cpu")
    assert not next(on_cpu.model.parameters()).is_cuda
    assert on_cpu.test_objective.evaluate()["accuracy"] == pytest.approx(run.summary["test_accuracy"], abs=2e-3)
