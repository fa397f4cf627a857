"""Tests for genlab.models: shapes, parameter counts, errors, torch.func compatibility."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp

from genlab.errors import ConfigError
from genlab.models import MODELS, build_model, count_parameters, list_models
from genlab.models.layers import dry_run
from genlab.models.vit import default_patch_size
from genlab.objective import Objective

FAMILIES = ["mlp", "lenet5", "cnn", "zhu-cnn", "linear", "diagonal-linear", "resnet", "vit"]
SHAPES = [(40,), (2, 40), (1, 28, 28), (3, 32, 32), (1, 8, 8)]


def _batch(shape, n=3, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g, dtype=dtype)


def _bn_modules(model):
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


# --------------------------------------------------------------------------- building


def test_registry_names():
    assert list(MODELS) == FAMILIES
    for name, spec in MODELS.items():
        assert spec.name == name and spec.description and spec.reference
        assert spec.default_activation in spec.activations


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", FAMILIES)
def test_builds_and_maps_batch_to_outputs(name, shape):
    torch.manual_seed(0)
    smallest = {"lenet5": 12, "zhu-cnn": 16}.get(name, 0)
    if min(shape[1:] or shape) < smallest:
        with pytest.raises(ConfigError, match=f"at least {smallest} per side"):
            build_model(name, shape, 7)
        return
    model = build_model(name, shape, 7)
    assert count_parameters(model) > 0
    out = model(_batch(shape))
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    model.eval()
    assert model(_batch(shape, n=1)).shape == (1, 7)


def test_list_models_counts_and_leaves_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    rows = list_models()
    assert torch.equal(state, torch.get_rng_state())
    assert [r["name"] for r in rows] == FAMILIES
    for r in rows:
        assert isinstance(r["parameters"], int) and r["parameters"] > 0
        assert r["note"] is None and r["description"]
        assert {"width", "depth", "activation", "options", "input_ranks"} <= set(r)
    by_name = {r["name"]: r for r in rows}
    assert by_name["lenet5"]["parameters"] == 61_706
    assert by_name["vit"]["options"].keys() == {"patch_size", "heads", "mlp_ratio"}

    small = {r["name"]: r for r in list_models((1, 8, 8), 10)}
    assert small["lenet5"]["parameters"] is None and "12" in small["lenet5"]["note"]
    assert small["zhu-cnn"]["parameters"] is None and "16" in small["zhu-cnn"]["note"]
    assert all(small[n]["parameters"] > 0 for n in FAMILIES if n not in ("lenet5", "zhu-cnn"))


# --------------------------------------------------------------------------- parameter counts


def test_mlp_parameter_count():
    assert count_parameters(build_model("mlp", (40,), 10)) == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    assert count_parameters(build_model("mlp", (1, 28, 28), 10)) == 89_610
    # Cohen et al.'s edge-of-stability network: width 200, depth 2, tanh.
    model = build_model("mlp", (3, 32, 32), 10, width=200, depth=2, activation="tanh")
    assert count_parameters(model) == 3072 * 200 + 200 + 200 * 200 + 200 + 200 * 10 + 10
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 3


def test_lenet5_parameter_count():
    classic = (1 * 6 * 25 + 6) + (6 * 16 * 25 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert classic == 61_706
    assert count_parameters(build_model("lenet5", (1, 28, 28), 10)) == classic
    # 1-D: 40 -> conv(pad 2) 40 -> pool 20 -> conv 16 -> pool 8; flatten 16 * 8.
    one_d = (6 * 5 + 6) + (16 * 6 * 5 + 16) + (128 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    assert count_parameters(build_model("lenet5", (40,), 10)) == one_d == 27_026
    wide = build_model("lenet5", (1, 28, 28), 10, width=12)
    convs = [m for m in wide.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [12, 32]


def test_cnn_parameter_count():
    # 40 -> 19 -> 10 -> 5 (k5/s2/p1 then k3/s2/p1 twice); flatten 25 * 5 = 125.
    expected = (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
    assert count_parameters(build_model("cnn", (40,), 10)) == expected == 5_210
    # 28 -> 13 -> 7 -> 4; flatten 25 * 16 = 400.
    expected_2d = (25 * 25 + 25) + 2 * (25 * 25 * 9 + 25) + (400 * 10 + 10)
    assert count_parameters(build_model("cnn", (1, 28, 28), 10)) == expected_2d == 15_960


def test_zhu_cnn_parameter_count():
    # Zhu et al. / Wang et al.: 28 -> 24 -> 12 -> 8 -> 4, flatten 10 * 16 = 160
    expected = (10 * 25 + 10) + (10 * 10 * 25 + 10) + (160 * 50 + 50) + (50 * 10 + 10)
    assert count_parameters(build_model("zhu-cnn", (1, 28, 28), 10)) == expected == 11_330
    # 40 -> 36 -> 18 -> 14 -> 7 on MNIST-1D
    assert count_parameters(build_model("zhu-cnn", (40,), 10)) == 60 + 510 + (70 * 50 + 50) + 510


def test_resnet_and_vit_parameter_counts():
    assert count_parameters(build_model("resnet", (3, 32, 32), 10)) == 272_474
    # vit on (40,): patch conv, class token, 11 positions, 4 blocks, final LN, head.
    d, hidden = 64, 128
    block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * hidden + hidden) + (hidden * d + d)
    expected = (4 * d + d) + d + 11 * d + 4 * block + 2 * d + (d * 10 + 10)
    assert count_parameters(build_model("vit", (40,), 10)) == expected == 135_754


def test_count_parameters_trainable_only():
    model = build_model("mlp", (40,), 10)
    model.head.requires_grad_(False)
    assert count_parameters(model) == 15_210
    assert count_parameters(model, trainable_only=True) == 15_210 - 1_010


# --------------------------------------------------------------------------- family specifics


@pytest.mark.parametrize("depth,n", [(8, 1), (14, 2), (20, 3)])
def test_resnet_stages(depth, n):
    model = build_model("resnet", (3, 32, 32), 10, depth=depth)
    assert len(model.stages) == 3
    assert [len(stage) for stage in model.stages] == [n, n, n]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth  # 3x3 convs plus the linear head
    assert [stage[0].conv2.out_channels for stage in model.stages] == [16, 32, 64]


def test_resnet_without_batchnorm_changes_only_norms():
    torch.manual_seed(0)
    with_bn = build_model("resnet", (3, 32, 32), 10)
    torch.manual_seed(0)
    without = build_model("resnet", (3, 32, 32), 10, batchnorm=False)
    assert _bn_modules(without) == []
    assert len(_bn_modules(with_bn)) == 1 + 2 * 9 + 2  # stem, two per block, two projections
    bn_params = sum(p.numel() for m in _bn_modules(with_bn) for p in m.parameters())
    assert count_parameters(with_bn) - count_parameters(without) == bn_params
    sd_with, sd_without = with_bn.state_dict(), without.state_dict()
    assert set(sd_without) <= set(sd_with)
    for key, value in sd_without.items():  # same init for everything that remains
        assert torch.equal(value, sd_with[key])
    out = without(_batch((3, 32, 32)))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_resnet_one_d_uses_conv1d():
    model = build_model("resnet", (40,), 10, depth=8, width=8)
    assert any(isinstance(m, nn.Conv1d) for m in model.modules())
    assert any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert not any(isinstance(m, nn.Conv2d) for m in model.modules())


@pytest.mark.parametrize("depth", [0, 1, 7, 10, 21])
def test_resnet_bad_depth(depth):
    with pytest.raises(ConfigError, match="depth"):
        build_model("resnet", (3, 32, 32), 10, depth=depth)


def test_construction_does_not_touch_batchnorm_statistics():
    model = build_model("resnet", (1, 8, 8), 10)
    for bn in _bn_modules(model):
        assert int(bn.num_batches_tracked) == 0
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert model.training and all(m.training for m in model.modules())


def test_cnn_small_inputs_and_depth():
    model = build_model("cnn", (1, 8, 8), 10, depth=6)
    assert model(_batch((1, 8, 8))).shape == (3, 10)
    assert build_model("cnn", (3,), 4)(_batch((3,))).shape == (3, 4)
    with pytest.raises(ConfigError, match="at least 3"):
        build_model("cnn", (2,), 4)


@pytest.mark.parametrize(
    "shape,patch", [((40,), 4), ((1, 28, 28), 4), ((3, 32, 32), 4), ((1, 8, 8), 2), ((1, 10, 10), 2), ((42,), 2)]
)
def test_vit_default_patch_size(shape, patch):
    assert default_patch_size(shape) == patch
    assert build_model("vit", shape, 10, width=8, depth=1, heads=2).config["patch_size"] == patch


def test_vit_options():
    model = build_model("vit", (1, 28, 28), 10, width=32, depth=2, patch_size=7, heads=8, mlp_ratio=4)
    assert model.pos_embed.shape == (1, 17, 32)
    assert model.blocks[0].mlp.fc1.out_features == 128
    assert model.blocks[0].attn.heads == 8
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())


def test_lenet5_pooling_option():
    model = build_model("lenet5", (1, 28, 28), 10, pooling="avg", activation="tanh")
    assert sum(isinstance(m, nn.AvgPool2d) for m in model.modules()) == 2
    assert count_parameters(model) == 61_706


def test_config_rebuilds_same_architecture():
    for name in FAMILIES:
        model = build_model(name, (1, 16, 16), 5, dropout=0.1)
        again = build_model(**model.config)
        assert again.config == model.config
        assert {k: v.shape for k, v in model.state_dict().items()} == {
            k: v.shape for k, v in again.state_dict().items()
        }


def test_seeded_builds_are_identical():
    for name in FAMILIES:
        torch.manual_seed(7)
        a = build_model(name, (1, 16, 16), 10)
        torch.manual_seed(7)
        b = build_model(name, (1, 16, 16), 10)
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
            assert ka == kb and torch.equal(va, vb)


def test_dry_run_restores_mode():
    model = build_model("cnn", (40,), 10)
    model.features.eval()
    assert tuple(dry_run(model.features, (40,))) == (125,)
    assert not model.features.training


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("name", FAMILIES)
def test_dropout_stochastic_in_train_deterministic_in_eval(name):
    torch.manual_seed(0)
    shape = (1, 16, 16)
    model = build_model(name, shape, 10, dropout=0.5)
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    x = _batch(shape, n=4)
    model.train()
    assert not torch.allclose(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", FAMILIES)
def test_no_dropout_modules_by_default(name):
    model = build_model(name, (1, 16, 16), 10)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_mlp_dropout_after_each_hidden_activation():
    model = build_model("mlp", (40,), 10, depth=3, dropout=0.2)
    kinds = [type(m).__name__ for m in model.body]
    assert kinds == ["Flatten"] + ["Linear", "ReLU", "Dropout"] * 3


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs,pattern",
    [
        (dict(name="transformer"), r"unknown model 'transformer'; allowed: mlp, lenet5, cnn, zhu-cnn, linear, diagonal-linear, resnet, vit"),
        (dict(name="mlp", width=0), r"width must be an integer >= 1; got 0"),
        (dict(name="mlp", depth=-1), r"depth must be an integer >= 1; got -1"),
        (dict(name="cnn", width=2.5), r"width must be an integer >= 1; got 2.5"),
        (dict(name="mlp", width=True), r"width must be an integer >= 1"),
        (dict(name="mlp", dropout=1.0), r"dropout must be a number in \[0, 1\); got 1.0"),
        (dict(name="mlp", dropout=-0.1), r"dropout must be a number in \[0, 1\)"),
        (dict(name="mlp", activation="sigmoid"), r"'sigmoid'.*allowed: relu, tanh, gelu, elu, softplus, identity"),
        (dict(name="vit", activation="tanh"), r"'tanh' is not available for vit; allowed: gelu, relu"),
        (dict(name="mlp", heads=2), r"unknown option 'heads' for model mlp; allowed options: none"),
        (
            dict(name="vit", kernel=3),
            r"unknown option 'kernel' for model vit; allowed options: patch_size, heads, mlp_ratio",
        ),
        (dict(name="vit", patch_size=3), r"patch_size 3 does not divide the input size 40; allowed: 1, 2, 4, 5"),
        (dict(name="vit", patch_size=0), r"patch_size must be an integer >= 1"),
        (dict(name="vit", heads=5), r"width 64 is not divisible by heads 5; allowed heads: 1, 2, 4, 8, 16, 32, 64"),
        (dict(name="vit", mlp_ratio=0), r"mlp_ratio must be a number > 0"),
        (dict(name="lenet5", depth=5), r"depth does not apply to lenet5"),
        (dict(name="lenet5", pooling="min"), r"pooling must be one of: max, avg; got 'min'"),
        (dict(name="resnet", depth=12), r"6n\+2"),
        (dict(name="mlp", batchnorm="no"), r"batchnorm must be true or false"),
    ],
)
def test_bad_values_raise_config_error(kwargs, pattern):
    kwargs = {"input_shape": (40,), "output_dim": 10, **kwargs}
    with pytest.raises(ConfigError, match=pattern) as info:
        build_model(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "shape,output_dim,pattern",
    [
        ((1, 1, 8, 8), 10, r"rank"),
        ((), 10, r"input_shape"),
        ((0, 8), 10, r"input_shape"),
        ("40", 10, r"input_shape"),
        ((40,), 0, r"output_dim"),
    ],
)
def test_bad_shapes_raise_config_error(shape, output_dim, pattern):
    with pytest.raises(ConfigError, match=pattern):
        build_model("cnn", shape, output_dim)


def test_lenet5_too_small_suggests_alternatives():
    with pytest.raises(ConfigError, match=r"lenet5 needs inputs of at least 12 per side \(got 8x8\); use cnn or mlp"):
        build_model("lenet5", (1, 8, 8), 10)


# --------------------------------------------------------------------------- float64 and torch.func

# Small but representative configurations (all families, 1-D and 2-D, BN on/off).
FUNC_CASES = [
    ("mlp", (40,), {}),
    ("lenet5", (1, 12, 12), {}),
    ("cnn", (40,), {}),
    ("cnn", (1, 8, 8), {}),
    ("resnet", (40,), dict(depth=8, width=4, batchnorm=False)),
    ("resnet", (2, 8, 8), dict(depth=8, width=4, batchnorm=False)),
    ("resnet", (1, 8, 8), dict(depth=8, width=4)),
    ("vit", (40,), {}),
    ("vit", (1, 8, 8), dict(width=16, depth=2, heads=2)),
]
FUNC_IDS = [f"{n}-{'x'.join(map(str, s))}-{'nobn' if not kw.get('batchnorm', True) else ''}" for n, s, kw in FUNC_CASES]


def _double_eval(name, shape, kwargs):
    torch.manual_seed(0)
    model = build_model(name, shape, 5, **kwargs).double().eval()
    if _bn_modules(model):  # non-trivial running statistics
        with torch.no_grad():
            for bn in _bn_modules(model):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("name", FAMILIES)
def test_float64(name):
    model = build_model(name, (1, 16, 16), 10).double()
    assert all(p.dtype == torch.float64 for p in model.parameters())
    out = model(_batch((1, 16, 16), dtype=torch.float64))
    assert out.dtype == torch.float64 and out.shape == (3, 10)


@pytest.mark.parametrize("name,shape,kwargs", FUNC_CASES, ids=FUNC_IDS)
def test_per_sample_grads_match_loop(name, shape, kwargs):
    model = _double_eval(name, shape, kwargs)
    x = _batch(shape, n=4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 4])
    # the Objective's vmap per-sample gradients, on every family, against a loop
    per_sample = Objective(model, x, y, loss="ce").per_sample_grads()
    names = [k for k, _ in model.named_parameters()]
    for i in range(len(x)):
        li = F.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        ref = torch.autograd.grad(li, [dict(model.named_parameters())[k] for k in names])
        for k, r in zip(names, ref):
            torch.testing.assert_close(per_sample[k][i], r, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,shape,kwargs", FUNC_CASES, ids=FUNC_IDS)
def test_input_jacobian(name, shape, kwargs):
    model = _double_eval(name, shape, kwargs)
    x = _batch(shape, n=1, dtype=torch.float64)[0]
    jac = jacrev(lambda xi: model(xi.unsqueeze(0))[0])(x)
    assert jac.shape == (5, *shape)
    ref = torch.autograd.functional.jacobian(lambda xi: model(xi.unsqueeze(0))[0], x)
    torch.testing.assert_close(jac, ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("name,shape,kwargs", [c for c in FUNC_CASES if c[0] in ("vit", "resnet", "cnn")])
def test_hessian_vector_products(name, shape, kwargs):
    """Forward-over-reverse (torch.func) and double-backward HVPs agree."""
    model = _double_eval(name, shape, kwargs)
    x = _batch(shape, n=4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1, 4])
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    g = torch.Generator().manual_seed(1)
    vec = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params.items()}

    def loss(p):
        return F.cross_entropy(functional_call(model, (p, buffers), (x,)), y)

    _, hvp = jvp(grad(loss), (params,), (vec,))
    ref = Objective(model, x, y, loss="ce").hvp(vec)  # the Objective's double-backward HVP
    for k, r in ref.items():
        torch.testing.assert_close(hvp[k], r, atol=1e-10, rtol=1e-8)
    assert any(r.abs().max() > 0 for r in ref.values())


def test_linear_and_diagonal_linear_models():
    x = torch.randn(7, 100)
    lin = build_model("linear", (100,), 3)
    assert count_parameters(lin) == 303
    torch.testing.assert_close(lin(x), x @ lin.fc.weight.T + lin.fc.bias)
    diag = build_model("diagonal-linear", (100,), 1, init_scale=0.5)
    assert count_parameters(diag) == 200 and float(diag.u.detach()[0, 0]) == 0.5
    with torch.no_grad():
        diag.u.normal_()
        diag.v.normal_()
    torch.testing.assert_close(diag(x), x @ (diag.u * diag.v).T)
    with pytest.raises(ConfigError, match="init_scale"):
        build_model("diagonal-linear", (100,), 1, init_scale="big")
