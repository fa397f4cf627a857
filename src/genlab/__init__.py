"""genlab: how well will a neural network generalize, and why.

The public API in one place::

    import genlab
    from genlab.train import train       # genlab.train is the package; train() lives in it
    run = train(genlab.TrainConfig(dataset="mnist1d", model="mlp", epochs=30), "runs/x")
    run = genlab.load_run("runs/x")
    run.objective.hvp(v)

On your own model, loss and data::

    from genlab.objective import Objective
    obj = Objective(my_model, torch.nn.CrossEntropyLoss(label_smoothing=0.1), my_loader)
    genlab.fit(obj, my_optimizer, "runs/mine", epochs=5, factories={"model": make_model, "data": make_data})
    genlab.register_model("mine", factory)      # then: genlab train --import mymodule --model mine
"""

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": ("genlab.config", "TrainConfig"),
    "Objective": ("genlab.objective", "Objective"),
    "load_dataset": ("genlab.data", "load_dataset"),
    "build_model": ("genlab.models", "build_model"),
    "load_run": ("genlab.train", "load_run"),
    "Run": ("genlab.train", "Run"),
    "fit": ("genlab.train", "fit"),
    "register_model": ("genlab.models.registry", "register_model"),
    "register_dataset": ("genlab.data.registry", "register_dataset"),
    "register_loss": ("genlab.losses", "register_loss"),
    "import_user_modules": ("genlab.registry", "import_user_modules"),
}


def __getattr__(name):
    # Imported on first use so that `genlab --version` and error paths stay fast.
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'genlab' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
