"""A restricted unpickler for NVlabs network pickles: rebuilds tensors and plain containers,
never runs code.

A stylegan2-ada-pytorch ``.pkl`` pickles its networks through ``torch_utils.persistence``,
whose reconstructor ``exec``s the module source stored in the pickle: loading one with
plain ``pickle`` runs whatever the file says. Here ``find_class`` allows only the globals
that rebuild tensors and containers, plus two stand-ins: NVlabs' persistence reconstructor
becomes ``PersistentObject`` (the class name and the pickled ``__dict__``; the module source
is kept as text and never executed) and ``dnnlib.util.EasyDict`` becomes ``EasyDict``, a
plain dict subclass (pickle rebuilds a dict subclass with NEWOBJ, which needs a class). Any
other global (``os.system``, ``builtins.eval``, ...) is refused with ``UnsafePickleError``.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
from typing import Any


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references a global outside the allowlist (it could run code).

    ``global_name``: the refused ``module.name``, so callers can say what the file is (a
    TensorFlow-era NVlabs pickle references ``dnnlib.tflib.network.Network``)."""

    def __init__(self, message: str, global_name: str = ""):
        super().__init__(message)
        self.global_name = global_name


class EasyDict(dict):
    """Stands in for ``dnnlib.util.EasyDict``: a dict whose keys read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclasses.dataclass
class PersistentObject:
    """What a ``torch_utils.persistence`` object becomes: data, not the class."""

    class_name: str
    state: dict
    module_src: str = ""  # the pickled module source, as text (never executed)
    version: int | None = None

    @property
    def init_kwargs(self) -> dict:
        """The constructor kwargs the persistence wrapper recorded (``{}`` if none)."""
        kw = self.state.get("_init_kwargs")
        return kw if isinstance(kw, dict) else {}


def _reconstruct_persistent_obj(meta: dict) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise UnsafePickleError("unsupported torch_utils.persistence record")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise UnsafePickleError("persistence record without a dict state")
    src = meta.get("module_src")
    version = meta.get("version")
    return PersistentObject(
        class_name=str(meta.get("class_name")),
        state=state,
        module_src=src if isinstance(src, str) else "",
        version=version if isinstance(version, int) else None,
    )


def _load_storage_bytes(b: bytes):
    """``torch.storage._load_from_bytes`` without its ``weights_only=False``."""
    import torch

    return torch.load(io.BytesIO(b), weights_only=True, map_location="cpu")


def _allowed() -> dict[tuple[str, str], Any]:
    import numpy as np
    import torch
    import torch._utils

    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "defaultdict"): collections.defaultdict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "slice"): slice,
        ("builtins", "complex"): complex,
        ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    if hasattr(torch._utils, "_rebuild_parameter_with_state"):
        allowed[("torch._utils", "_rebuild_parameter_with_state")] = (
            torch._utils._rebuild_parameter_with_state
        )
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "scalar")] = np.core.multiarray.scalar
        allowed[(mod, "_reconstruct")] = np.core.multiarray._reconstruct
    for name in (
        "float32",
        "float16",
        "float64",
        "bfloat16",
        "int64",
        "int32",
        "int16",
        "int8",
        "uint8",
        "bool",
    ):
        allowed[("torch", name)] = getattr(torch, name)
    for name in (
        "FloatStorage",
        "HalfStorage",
        "DoubleStorage",
        "BFloat16Storage",
        "LongStorage",
        "IntStorage",
        "ShortStorage",
        "CharStorage",
        "ByteStorage",
        "BoolStorage",
    ):
        allowed[("torch", name)] = getattr(torch, name)
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns allowlisted globals."""

    def __init__(self, file, *, source: str = "pickle"):
        super().__init__(file)
        self._allowed = _allowed()
        self._source = source

    def find_class(self, module: str, name: str):
        fn = self._allowed.get((module, name))
        if fn is None:
            raise UnsafePickleError(
                f"refusing to load {self._source}: it references {module}.{name}, which is not "
                "a tensor or plain container (a pickle can run code on load; only NVlabs "
                "network pickles are accepted)",
                f"{module}.{name}",
            )
        return fn

    def persistent_load(self, pid):
        raise UnsafePickleError(
            f"refusing to load {self._source}: unexpected persistent id {pid!r}"
        )


def load(path: str | os.PathLike) -> Any:
    """Unpickle ``path`` with the restricted unpickler (UnsafePickleError on any other global)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, source=str(path)).load()


def module_state_dict(obj: Any, prefix: str = "") -> dict:
    """Flatten a pickled module (a ``PersistentObject`` or a plain ``__dict__``) into a state
    dict: its ``_parameters`` and ``_buffers``, recursively through ``_modules``."""
    state = obj.state if isinstance(obj, PersistentObject) else obj
    if not isinstance(state, dict) or "_modules" not in state:
        raise ValueError(f"{prefix or 'object'} is not a pickled torch module")
    out = {}
    for key in ("_parameters", "_buffers"):
        for name, t in (state.get(key) or {}).items():
            if t is not None:
                out[prefix + name] = t.detach() if hasattr(t, "detach") else t
    for name, sub in (state.get("_modules") or {}).items():
        if sub is not None:
            out.update(module_state_dict(sub, f"{prefix}{name}."))
    return out
