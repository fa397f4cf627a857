"""The code behind a certified predictor: which modules registered its model and dataset, and their sources.

A certificate for a user's own network (``--import mynet --model my-net --dataset my-data``, or a model
registered by a module imported in Python) records, under ``code``: every ``--import`` module and the module of
each user factory, with the SHA-256 of its source file, and the ``module:function`` of the model factory and of
the dataset factory the registries held (``None`` for genlab's own). ``genlab verify``
never imports what a certificate names (verifying a file must not run code the file chooses): the verifier
passes the same ``--import``, and verification fails, in one line naming what differs, when a module is
missing, its source differs, or a name is registered to another factory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from genlab.bounds.compression.certificate import sha256_bytes
from genlab.errors import ConfigError


def module_sha256(name: str) -> str | None:
    """SHA-256 of an imported module's source file (None when it has none, e.g. a namespace package)."""
    path = getattr(sys.modules.get(name), "__file__", None)
    return sha256_bytes(Path(path).read_bytes()) if path else None


def _factory_of(kind: str, name: str) -> str | None:
    """``module:function`` of a user-registered model or dataset factory; None for genlab's own."""
    from genlab.registry import factory_ref

    if kind == "model":
        from genlab.models import MODELS

        spec = MODELS[name]
        fn = spec.builder if spec.any_options else None  # a user factory; genlab's own builders are not recorded
    else:
        from genlab.data import DATASETS

        fn = DATASETS[name].factory
    if fn is None:
        return None
    try:
        return factory_ref(fn)
    except ConfigError:  # a lambda or a local function: named as well as Python can
        return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def code_record(model_name: str, dataset_name: str) -> dict[str, Any]:
    """The ``code`` field of a certificate made in this process: the ``--import`` modules and the modules of
    the user factories (registered by a plain Python import, say), each with its source's SHA-256."""
    from genlab.registry import imported_modules

    factories = {"model": _factory_of("model", model_name), "dataset": _factory_of("dataset", dataset_name)}
    modules = list(imported_modules())
    for ref in factories.values():
        module = ref.split(":", 1)[0] if ref else None
        if module and module != "__main__" and module not in modules and module in sys.modules:
            modules.append(module)
    return {"imports": [{"module": m, "sha256": module_sha256(m)} for m in modules],
            "model_factory": factories["model"], "dataset_factory": factories["dataset"]}


def code_problems(code: dict[str, Any], model_name: str, dataset_name: str) -> list[str]:
    """What differs between the recorded code and this process's (empty: the same). A module not imported
    here is a :class:`ConfigError` (exit 2): the verifier must pass ``--import``."""
    from genlab.registry import imported_modules

    here = set(imported_modules()) | set(sys.modules)   # --import, or imported by the verifying Python code
    missing = [m["module"] for m in code["imports"] if m["module"] not in here]
    if missing:
        flags = " ".join(f"--import {m}" for m in missing)
        raise ConfigError(f"the certified predictor was built with {flags}; pass the same to genlab verify "
                          f"(verify does not import what a certificate names)")
    problems = []
    for m in code["imports"]:
        got = module_sha256(m["module"])
        if got != m["sha256"]:
            problems.append(f"module {m['module']}: its source here (SHA-256 {str(got)[:12]}...) differs from the "
                            f"one certified ({str(m['sha256'])[:12]}...)")
    for kind, name in (("model", model_name), ("dataset", dataset_name)):
        recorded, got = code[f"{kind}_factory"], _factory_of(kind, name)
        if recorded != got:
            problems.append(f"{kind} {name!r} is built here by {got or 'genlab itself'}, in the certificate by "
                            f"{recorded or 'genlab itself'}")
    return problems
