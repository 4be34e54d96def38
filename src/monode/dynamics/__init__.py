"""What the ODE is: the momentum neural-ODE family, one file per model, and the registry.

    field = build_model("hbnode", dim=4, hidden=32)                  # an MLP f, paper defaults
    init = build_initializer("hbnode", in_channels=2, dim=4, hidden=16, conv=False)
    field = build_model("ghbnode", net="conv", preset="mnist")       # DF(6, 45), tanh, learnable xi

`MODELS[name]` is a `ModelSpec`: the field class, the options that make the name, its initial-state
builder and the papers' per-task presets (data). Tasks build every model through these two
functions and never branch on the name. A new model is one new file plus one line in `MODELS`
(or `register_model` from outside the package).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

from torch import nn

from ._activations import ActivationSpec, resolve_activation
from ._base import BoundField, ClosedFormBoundField, NoCoefficients, State, VectorField
from ._spec import EXPERIMENTS, ModelSpec
from ._time_scaled import ClosedFormTimeScaledField, TimeScaledField, time_scaled
from .adam import ADAMNODE_SPEC, AdamCoefficients, AdamField
from .cnf import CNF
from .heavy_ball import GHBNODE_SPEC, HBNODE_SPEC, HeavyBallCoefficients, HeavyBallField
from .nesterov import (
    GNESTEROVNODE_SPEC,
    NESTEROVNODE_SPEC,
    NesterovCoefficients,
    NesterovField,
    OfficialNesterovField,
    nesterov_dr,
    nesterov_k,
    nesterov_r,
)
from .networks import AdamInitialState, ConvField, InitialVelocity, MLPField, ZeroAugment
from .node import ANODE_SPEC, NODE_SPEC, NODEField
from .sonode import SONODE_SPEC, SecondOrderField

__all__ = [
    "MODELS",
    "EXPERIMENTS",
    "build_model",
    "build_initializer",
    "get_spec",
    "register_model",
    "ModelSpec",
    "VectorField",
    "BoundField",
    "ClosedFormBoundField",
    "TimeScaledField",
    "ClosedFormTimeScaledField",
    "time_scaled",
    "State",
    "ActivationSpec",
    "resolve_activation",
    "NODEField",
    "SecondOrderField",
    "HeavyBallField",
    "AdamField",
    "NesterovField",
    "OfficialNesterovField",
    "NoCoefficients",
    "HeavyBallCoefficients",
    "AdamCoefficients",
    "NesterovCoefficients",
    "nesterov_k",
    "nesterov_r",
    "nesterov_dr",
    "ConvField",
    "MLPField",
    "ZeroAugment",
    "InitialVelocity",
    "AdamInitialState",
    "CNF",
]

MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        NODE_SPEC,
        ANODE_SPEC,
        SONODE_SPEC,
        HBNODE_SPEC,
        GHBNODE_SPEC,
        ADAMNODE_SPEC,
        NESTEROVNODE_SPEC,
        GNESTEROVNODE_SPEC,
    )
}

NetSpec = Union[str, nn.Module, Callable[[int, int], nn.Module]]
_NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLPField, "conv": ConvField}


def register_model(spec: ModelSpec) -> None:
    """Add `spec` to `MODELS` (every task, layer and registry-driven test then knows the model)."""
    if spec.name in MODELS:
        raise ValueError(f"a model named {spec.name!r} is already registered")
    MODELS[spec.name] = spec


def get_spec(name: str) -> ModelSpec:
    """The registry entry `MODELS[name]`, with an error listing the names if it is unknown."""
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; choose one of {sorted(MODELS)}")
    return MODELS[name]


def _sizes(
    spec: ModelSpec, preset: str | None, dim: int | None, hidden: int | None
) -> tuple[dict, int | None, int | None]:
    """(preset field options, dim, hidden): explicit sizes win over the preset's."""
    settings = spec.preset(preset)
    preset_dim, preset_hidden = settings.pop("dim", None), settings.pop("hidden", None)
    return settings, preset_dim if dim is None else dim, preset_hidden if hidden is None else hidden


def build_model(
    name: str,
    *,
    dim: int | None = None,
    hidden: int | None = None,
    net: NetSpec = "mlp",
    net_options: dict[str, Any] | None = None,
    preset: str | None = None,
    official: bool = False,
    **options: Any,
) -> VectorField:
    """The vector field of model `name`.

    Args:
        name: a key of `MODELS`.
        dim: channels (features) of h; the f network maps `spec.f_channels(dim)`. Default: the preset's.
        hidden: hidden width of a built network. Default: the preset's.
        net: "mlp" (`MLPField`) or "conv" (`ConvField`), built with `net_options`; an nn.Module
            used as f as it is; or a callable (in_channels, out_channels) -> nn.Module.
        preset: a benchmark task's paper configuration (one of `EXPERIMENTS`), over the name's defaults.
        official: the released code's system instead of the paper's, for models where they differ
            (`ModelSpec.official_field`; a compatibility option).
        **options: field options (e.g. activation=, xi=, xi_logit=), applied last.
    """
    spec = get_spec(name)
    field_class = spec.field
    if official:
        if spec.official_field is None:
            raise ValueError(f"official=True: model {name!r} has no separate released-code system")
        field_class = spec.official_field
    settings, dim, hidden = _sizes(spec, preset, dim, hidden)
    settings = {**spec.options, **settings, **options}
    if not isinstance(net, nn.Module):
        if dim is None:
            raise ValueError(f"build_model({name!r}): pass dim= (or a preset with sizes) to build its f network")
        f_in, f_out = spec.f_channels(dim)
        if isinstance(net, str):
            if net not in _NETWORKS:
                raise ValueError(f"net must be one of {sorted(_NETWORKS)}, an nn.Module or a callable, got {net!r}")
            if hidden is None:
                raise ValueError(f"build_model({name!r}, net={net!r}): pass hidden= (or a preset with sizes)")
            net = _NETWORKS[net](f_in, hidden, f_out, **(net_options or {}))
        else:
            net = net(f_in, f_out)
    return field_class(net, **settings)


def build_initializer(
    name: str,
    *,
    in_channels: int,
    dim: int | None = None,
    hidden: int | None = None,
    conv: bool = True,
    preset: str | None = None,
    **init_options: Any,
) -> nn.Module:
    """The module building model `name`'s initial variables from an input with `in_channels` channels.

    NODE/ANODE: zero augmentation to dim channels; SONODE and the momentum models: the papers'
    learned initial velocity (AdamNODE: also v0). conv=False builds it for vectors [B, features].
    """
    spec = get_spec(name)
    _, dim, hidden = _sizes(spec, preset, dim, hidden)
    if dim is None:
        raise ValueError(f"build_initializer({name!r}): pass dim= (or a preset with sizes)")
    return spec.initializer(in_channels, dim, hidden, conv=conv, **init_options)
