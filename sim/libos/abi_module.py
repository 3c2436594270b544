"""Load a researcher's variant ABI from a Python file outside the package.

The file defines ``ABI`` (an ``sim.libos.abi.Abi``, usually made with
``PICO_ABI.derive(...)``) and, for calls it adds, ``HANDLERS``: a function
``HANDLERS(personality) -> {call name: handler}``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sim.libos.abi import Abi, AbiError


@dataclass(frozen=True)
class AbiModule:
    path: Path
    abi: Abi
    handlers: Callable[[Any], dict[str, Any]] | None


def load_abi_module(path: str | Path) -> AbiModule:
    path = Path(path)
    if not path.is_file():
        raise AbiError(f"ABI module {path} does not exist")
    spec = importlib.util.spec_from_file_location(f"picosim_abi_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise AbiError(f"ABI module {path} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except AbiError:
        raise
    except Exception as err:  # the researcher's file: report, don't trace back
        raise AbiError(f"ABI module {path} failed to load: {type(err).__name__}: {err}") from err
    abi = getattr(module, "ABI", None)
    if not isinstance(abi, Abi):
        raise AbiError(f"ABI module {path} must define ABI = an sim.libos.abi.Abi")
    handlers = getattr(module, "HANDLERS", None)
    if handlers is not None and not callable(handlers):
        raise AbiError(f"ABI module {path}: HANDLERS must be a function of the personality")
    return AbiModule(path, abi, handlers)
