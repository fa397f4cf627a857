"""Extensions and factories: how genlab finds code that is not its core, its own features included.

Three mechanisms, one place:

* **Extensions** (:func:`load_extensions`): every module named in the ``genlab.extensions`` entry-point
  group is imported once, before a registry is read. Importing it registers what it provides (optimizers,
  training plugins, models, datasets, losses). genlab's own features (SGLD, IVON, sharpness tracking,
  subspace training, quantization) are registered this way, so the training loop knows none of them by name
  and imports nothing above it. A third-party package adds its own with, in its ``pyproject.toml``::

      [project.entry-points."genlab.extensions"]
      mypkg = "mypkg.genlab_models"

* **--import MODULE** (:func:`import_user_modules`): the same for a module that is not installed as a
  package -- a file next to the user's script (``--import examples_module``) or a dotted module path.
* **Factories** (:func:`resolve_factory`): ``"package.module:function"`` names a callable; run directories
  and certificates record factories this way so they can be rebuilt later (and say which import is missing
  when they cannot).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError

GROUP = "genlab.extensions"
_loaded = False
_imported: list[str] = []


def load_extensions() -> None:
    """Import every module of the ``genlab.extensions`` entry-point group (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in importlib.metadata.entry_points(group=GROUP):
        try:
            ep.load()
        except Exception as err:  # an extension that cannot load is named, not hidden
            _loaded = False
            raise ConfigError(f"genlab extension {ep.name} ({ep.value}) failed to load: {err}") from err


def import_user_modules(modules: Iterable[str] | None) -> list[str]:
    """Import modules given by ``--import`` (dotted names, or paths of ``.py`` files); returns their names.

    The current directory is on the search path, as for ``python -m``. A module already imported is not
    imported again.
    """
    names = []
    for spec in modules or []:
        name = _import_one(spec)
        if name not in _imported:
            _imported.append(name)
        names.append(name)
    return names


def imported_modules() -> list[str]:
    """The modules imported by :func:`import_user_modules` so far (recorded in run directories)."""
    return list(_imported)


def _import_one(spec: str) -> str:
    path = Path(spec)
    if spec.endswith(".py"):
        if not path.is_file():
            raise ConfigError(f"--import {spec}: no such file")
        folder, name = str(path.resolve().parent), path.stem
    else:
        folder, name = str(Path.cwd()), spec
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        importlib.import_module(name)
    except ImportError as err:
        raise ConfigError(f"--import {spec}: cannot import it ({err}); give a module on the Python path or "
                          f"a .py file") from None
    return name


def resolve_factory(ref: str) -> Callable[..., Any]:
    """The callable ``"package.module:function"`` names (one line naming what is missing when it cannot)."""
    if not isinstance(ref, str) or ":" not in ref:
        raise ConfigError(f"factory {ref!r}: expected 'package.module:function'")
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"factory {ref}: cannot import {module} ({err}); install it or pass --import "
                          f"{module}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"factory {ref}: {module} has no {attr}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"factory {ref}: not callable")
    return obj


def factory_ref(fn: Callable[..., Any]) -> str:
    """``"package.module:function"`` for a module-level callable (what :func:`resolve_factory` reverses)."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not name or "<" in name:
        raise ConfigError(f"{fn!r} is not a module-level function; a run directory can only record those")
    if module == "__main__":
        raise ConfigError(f"{name} is defined in the __main__ script; put it in a module so a run directory "
                          f"can name it (and pass --import MODULE to the CLI)")
    return f"{module}:{name}"


class Registry(dict):
    """A name -> entry dict that imports the extensions (:func:`load_extensions`) before it is first read,
    so a lookup sees every feature registered by genlab and by installed packages."""

    def _load(self):
        load_extensions()

    def __getitem__(self, key):
        self._load()
        return super().__getitem__(key)

    def __contains__(self, key):
        self._load()
        return super().__contains__(key)

    def __iter__(self):
        self._load()
        return super().__iter__()

    def __len__(self):
        self._load()
        return super().__len__()

    def get(self, key, default=None):
        self._load()
        return super().get(key, default)

    def keys(self):
        self._load()
        return super().keys()

    def items(self):
        self._load()
        return super().items()

    def values(self):
        self._load()
        return super().values()
