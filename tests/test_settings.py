"""Settings in sections: the optimizer as a discriminated union, per-section resumable settings, flat and
sectioned spellings, generated flags, and genlab bound's stages as one base config plus overrides."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from pydantic import Field

from genlab.config import TrainConfig, validate_config
from genlab.errors import CheckpointError, ConfigError
from genlab.settings import IVONSettings, OptimizerSettings, SGDSettings, SGLDSettings
from genlab.settings.bound import BOUND_BASE, STAGE_OWNED, BoundConfig, BoundStages
from genlab.train import train
from genlab.train.optimizers import OPTIMIZERS, OptimizerSpec, register_optimizer

ROOT = Path(__file__).resolve().parent.parent


def test_only_the_chosen_optimizer_has_settings():
    ivon = TrainConfig(optimizer="ivon", ess=500.0, lr=0.2)
    assert type(ivon.optimizer) is IVONSettings and ivon.optimizer.ess == 500.0
    assert "momentum" not in ivon.model_dump()["optimizer"] and "noise_trace" not in ivon.flat()
    assert type(TrainConfig(optimizer="gld").optimizer) is SGLDSettings
    assert type(TrainConfig().optimizer) is SGDSettings and TrainConfig(optimizer="adam").optimizer.momentum == 0.9
    # a setting of another optimizer holding that optimizer's default is what stored configs carry: dropped
    assert type(TrainConfig(optimizer="sgd", ess=None, hess_init=1.0).optimizer) is SGDSettings
    with pytest.raises(ConfigError, match=r"^bad setting ess: a setting of optimizer ivon, which this run does not "
                                          r"use \(optimizer sgd\); remove it$"):
        validate_config(TrainConfig, {"optimizer": "sgd", "ess": 100.0})
    with pytest.raises(ConfigError, match="mc_samples: a setting of optimizer ivon / vgd"):
        validate_config(TrainConfig, {"optimizer": "adam", "mc_samples": 4})


def test_flat_and_sectioned_spellings_are_one_config():
    flat = TrainConfig(dataset="digits", model="mlp", width=8, optimizer="sgld", noise_trace=1e-3, steps=3,
                       track_sharpness=2, noise="label", noise_sigma=0.1)
    nested = TrainConfig(**json.loads(json.dumps(flat.model_dump())))
    assert nested == flat and nested.flat() == flat.flat()
    assert flat.data.name == "digits" and flat.run.steps == 3 and flat.plugins.tracking.track_sharpness == 2
    mixed = TrainConfig(data={"name": "digits"}, model={"name": "mlp", "width": 8},
                        optimizer={"name": "sgld", "noise_trace": 1e-3}, run={"steps": 3},
                        plugins={"tracking": {"track_sharpness": 2}, "noise": {"noise": "label", "noise_sigma": 0.1}})
    assert mixed == flat
    assert flat.with_changes(lr=0.5).optimizer.lr == 0.5 and flat.optimizer.lr == 0.1
    with pytest.raises(ConfigError, match=r"data\.shuffle: unknown setting"):
        validate_config(TrainConfig, {"data": {"shuffle": True}})
    with pytest.raises(ConfigError, match=r"plugins\.mixup: unknown setting"):
        validate_config(TrainConfig, {"plugins": {"mixup": {}}})


@pytest.mark.parametrize("values, message", [
    ({"track_top_k": 3}, "track_top_k: a setting of track_sharpness, which this run does not use"),
    ({"noise_sigma": 0.2}, "noise_sigma: a setting of noise injection"),
    ({"subspace_noise": 0.1}, "need intrinsic_dim"),
    ({"quant_levels": 4}, "quant_levels needs intrinsic_dim"),
    ({"quant_stages": 2, "intrinsic_dim": 10}, "quant_stages needs quant_levels"),
    ({"quant_rate": 1.0, "intrinsic_dim": 10}, "quant_rate needs quant_levels"),
    ({"lr": 0}, "lr: Input should be greater than 0 (got 0)"),
    ({"optimizer": "ivon", "ess": -1}, "ess: Input should be greater than 0 (got -1)"),
    ({"epochs": 2, "steps": 3}, "give epochs or steps, not both"),
])
def test_each_section_refuses_its_own_bad_settings_in_one_line(values, message):
    with pytest.raises(ConfigError) as err:
        validate_config(TrainConfig, values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_resumable_settings_are_each_sections_declaration():
    resumable = TrainConfig.resumable_settings()
    assert {"epochs", "steps", "eval_every", "device", "data_dir", "tensorboard", "track_sharpness",
            "track_top_k"} <= resumable
    assert not {"lr", "seed", "batch_size", "noise", "intrinsic_dim", "dtype"} & resumable
    a, b = TrainConfig(track_sharpness=5, device="cpu"), TrainConfig(steps=9, tensorboard=True)
    assert a.trajectory_fields() == b.trajectory_fields()


class SignSGDSettings(OptimizerSettings):
    """A user's optimizer with a setting of its own."""

    beta: float = Field(0.0, ge=0.0, lt=1.0, description="momentum of the sign")


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr, beta):
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.add_(m.sign(), alpha=-group["lr"])


@pytest.fixture
def signsgd():
    from genlab.settings.optimizers import OPTIMIZER_SETTINGS

    spec = register_optimizer(OptimizerSpec("signsgd", "sign of a momentum of the gradient", False,
                                            lambda params, c: SignSGD(params, c.optimizer.lr, c.optimizer.beta),
                                            settings=SignSGDSettings))
    yield spec
    dict.pop(OPTIMIZERS, "signsgd")
    OPTIMIZER_SETTINGS.pop("signsgd")


def test_a_registered_optimizer_brings_its_settings(signsgd, tmp_path):
    cfg = TrainConfig(dataset="digits", n_train=200, model="mlp", width=8, optimizer="signsgd", beta=0.5, lr=0.01,
                      steps=6, checkpoint_every=3, device="cpu")
    assert type(cfg.optimizer) is SignSGDSettings
    run = train(cfg, tmp_path / "r", quiet=True)
    assert run.summary["status"] == "complete" and run.config.optimizer.beta == 0.5
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert stored["optimizer"] == {"name": "signsgd", "lr": 0.01, "lr_schedule": "constant", "beta": 0.5}
    with pytest.raises(CheckpointError, match=r"beta: 0\.5 there, 0\.9 now"):
        train(cfg.with_changes(beta=0.9), tmp_path / "r", quiet=True)
    with pytest.raises(ConfigError, match="beta: a setting of optimizer signsgd"):
        validate_config(TrainConfig, {"optimizer": "sgd", "beta": 0.5})
    with pytest.raises(TypeError, match="subclass of OptimizerSettings"):
        register_optimizer(OptimizerSpec("bad", "", False, lambda p, c: None, settings=dict))


def test_bound_stages_derive_from_one_base_config():
    cfg = BoundConfig(dataset="digits", model="mlp", width=16, intrinsic_dim=50, epochs=4, weight_decay=1e-4,
                      quant_levels=5, qat_epochs=2, qat_lr=0.003, prior_split=300, prior_epochs=3, prior_lr=0.01,
                      subspace_noise=0.1)
    base = cfg.train
    assert base.model.batchnorm is True and base.optimizer.name == "adam" and base.optimizer.lr_schedule == "cosine"
    sub, quant, prior = cfg.subspace_stage("P"), cfg.quantization_stage("S", "P"), cfg.prior_stage()
    assert sub.with_changes(subspace_prior=None) == base and sub.plugins.subspace.subspace_prior == "P"
    assert (quant.optimizer.lr, quant.run.epochs, quant.plugins.quantization.quant_levels) == (0.003, 2, 5)
    assert quant.plugins.init.init_from == "S" and quant.plugins.subspace.subspace_noise == 0.0
    assert prior.plugins.subspace.intrinsic_dim is None and prior.data.n_train == 300
    assert (prior.optimizer.lr, prior.run.epochs) == (0.01, 3)
    for stage in (sub, quant, prior):  # every other training setting is the base's
        assert stage.optimizer.weight_decay == 1e-4 and stage.model.width == 16 and stage.data.name == "digits"
    # the spellings of earlier versions (config files, certificates) still read
    old = BoundConfig(dataset="digits", model="mlp", intrinsic_dim=50, levels=5, qat_stages=2, noise=0.1)
    assert (old.quant_levels, old.quant_stages, old.train.plugins.subspace.subspace_noise) == (5, 2, 0.1)
    assert BoundConfig.model_validate(json.loads(json.dumps(cfg.model_dump()))) == cfg
    with pytest.raises(ConfigError, match="init_from: set by genlab bound's stages"):
        validate_config(BoundConfig, {"train": {"init_from": "x"}})
    with pytest.raises(ConfigError, match="lr: Input should be greater than 0"):
        validate_config(BoundConfig, {"lr": -1.0})


def _flags(command: str, negations: bool = True) -> set[str]:
    from typer.main import get_command

    from genlab.cli import app

    cmd = get_command(app).commands[command]
    return {opt for p in cmd.params for opt in p.opts + (p.secondary_opts if negations else [])}


def test_bound_flags_are_the_training_flags_plus_the_stages():
    train_flags, bound_flags = _flags("train"), _flags("bound")
    owned = {"--" + k.replace("_", "-") for k in STAGE_OWNED}
    assert (train_flags - owned - {"--overwrite", "--no-overwrite"}) <= bound_flags
    assert {"--quant-levels", "--levels", "--quant-stages", "--qat-stages", "--qat-epochs", "--qat-lr",
            "--prior-split", "--prior-dataset", "--bound", "--delta", "--grid", "--from-run", "--from-model",
            "--buffer-levels"} <= bound_flags
    assert "--init-from" not in bound_flags and "--subspace-prior" not in bound_flags
    assert "--distill-from" not in bound_flags and "--distill-temperature" in bound_flags
    assert len(BoundStages.model_fields) == 16 and set(BOUND_BASE) <= set(TrainConfig.flat_names())


def test_the_readme_flag_table_names_every_train_flag_and_no_other():
    """The README's genlab train table is written by hand (it explains); it must match the generated flags."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("`genlab train` flags", 1)[1].split("\n\n")[1]
    named = set(re.findall(r"--[a-z][a-z0-9-]*", table))
    generated = _flags("train") | {"--import", "--no-download"}  # global options, accepted by every command
    assert named - generated == set(), f"README names flags genlab train lacks: {named - generated}"
    missing = {f for f in _flags("train", negations=False) if f"--no-{f[2:]}" not in named} - named - {"--config", "-q"}
    assert missing == set(), f"flags missing from the README table: {missing}"
