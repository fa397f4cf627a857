"""Small reference models by name.

>>> from genlab.models import build_model
>>> model = build_model("cnn", (40,), 10)          # MNIST-1D strided CNN
>>> model = build_model("mlp", (1, 28, 28), 10, width=200, depth=2, activation="tanh")
>>> model = build_model("resnet", (3, 32, 32), 10, depth=20, batchnorm=False)

Families: ``mlp``, ``lenet5``, ``cnn``, ``resnet``, ``vit`` (see :data:`MODELS`).
``input_shape`` is per example: ``(L,)`` (one-channel signal), ``(C, L)`` or
``(C, H, W)``. Every model maps ``(B, *input_shape) -> (B, output_dim)``, works in
float64 after ``.double()`` and with ``torch.func`` (``functional_call``,
``vmap(grad(...))`` in eval mode, ``jacrev`` w.r.t. the input, double backward).
"""

from genlab.models.cnn import SmallCNN
from genlab.models.lenet import LeNet5
from genlab.models.mlp import MLP
from genlab.models.registry import MODELS, ModelSpec, build_model, count_parameters, list_models
from genlab.models.resnet import ResNet
from genlab.models.vit import VisionTransformer

__all__ = [
    "MODELS",
    "ModelSpec",
    "build_model",
    "count_parameters",
    "list_models",
    "MLP",
    "LeNet5",
    "SmallCNN",
    "ResNet",
    "VisionTransformer",
]
