"""monode: momentum-accelerated neural ODEs on PyTorch.

The names below load on first use (PEP 562), so `import monode` and `monode --help` do not import torch;
`monode.odeint` and the rest import it when first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "odeint",
    "odeint_adjoint",
    "odeint_event",
    "METHODS",
    "SolverStats",
    "record_stats",
    "ODESolverError",
    "ODEInputError",
    "NonFiniteStateError",
    "StepSizeUnderflowError",
    "MaxStepsExceededError",
    "load_run",
    "LoadedRun",
]
_WHERE = {name: ".tasks" if name in ("load_run", "LoadedRun") else ".solvers" for name in __all__}

if TYPE_CHECKING:
    from .solvers import (
        METHODS,
        MaxStepsExceededError,
        NonFiniteStateError,
        ODEInputError,
        ODESolverError,
        SolverStats,
        StepSizeUnderflowError,
        odeint,
        odeint_adjoint,
        odeint_event,
        record_stats,
    )
    from .tasks import LoadedRun, load_run


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'monode' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})
