"""The papers' networks: f fields (conv and MLP) and the initial-state builders.

Fields are called as net(t, x). Initial-state builders are called as init(x) and return the
model's initial variables: h0 alone (then momenta start at zero), (h0, m0), or (h0, m0, v0). All
builders share the constructor (in_channels, dim, hidden, *, conv=True) so a registry entry can
name its builder; conv=False gives the same network on vectors [B, features] (a 1x1 conv is a
Linear layer, and the 3x3 conv becomes one too).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ._activations import activation_backward, activation_function

__all__ = ["mlp", "ConvField", "MLPField", "ZeroAugment", "InitialVelocity", "AdamInitialState", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


def _activation_module(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], activation: str = "tanh") -> nn.Sequential:
    """Linear layers through `sizes` (in, hidden..., out) with `activation` between them (none after the last)."""
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must hold >= 2 positive widths (in, ..., out), got {tuple(sizes)!r}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        if i:
            layers.append(_activation_module(activation))
        layers.append(nn.Linear(a, b))
    return nn.Sequential(*layers)


class ConvField(nn.Module):
    """The papers' image field DF(channels, hidden), time concatenated as a channel before each conv:

        [x, t] -> conv1x1 -> ReLU -> [., t] -> conv3x3 (pad 1) -> ReLU -> [., t] -> conv1x1.

    Parameters: (in+1)*hid + hid + 9*(hid+1)*hid + hid + (hid+1)*out + out.
    """

    def __init__(self, in_channels: int, hidden: int, out_channels: int | None = None) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.conv1 = nn.Conv2d(in_channels + 1, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden + 1, hidden, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(hidden + 1, out_channels, kernel_size=1)
        self.act = nn.ReLU(inplace=True)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x.dtype).expand(x.shape[0], 1, *x.shape[2:])
        out = self.act(self.conv1(torch.cat([x, tt], 1)))
        out = self.act(self.conv2(torch.cat([out, tt], 1)))
        return self.conv3(torch.cat([out, tt], 1))


class MLPField(nn.Module):
    """An MLP field: Linear layers with `activation` between them (none after the last).

    `hidden` is one width (then `depth` layers: in -> hidden -> ... -> out) or a sequence of hidden
    widths (depth = len + 1). time=True appends t as one more input feature of the first layer
    (Dupont et al.'s ODEFunc). The papers' uses: Walker2D 3-layer tanh 24->24 (depth=1 is the HB
    repo's single Linear), plane vibration 3-layer ReLU, point clouds ELU with time.

    With tanh, sigmoid or ReLU (or depth 1) the network also gives its vector-Jacobian product in
    closed form (`forward_saved` and `vjp`): per layer z = x W^T + b,

        dL/dW = g^T x,   dL/db = sum_batch g,   dL/dx = (g W) * act'(x)   (act' from the saved output),

    which the adjoint solver uses instead of autograd (`closed_form`).
    """

    def __init__(
        self,
        in_features: int,
        hidden: int | Sequence[int],
        out_features: int | None = None,
        *,
        depth: int = 3,
        activation: str = "tanh",
        time: bool = False,
    ) -> None:
        super().__init__()
        out_features = in_features if out_features is None else out_features
        if isinstance(hidden, int):
            if depth < 1:
                raise ValueError(f"depth must be >= 1, got {depth}")
            widths = [hidden] * (depth - 1)
        else:
            widths = [int(w) for w in hidden]
        self.layers = mlp([in_features + int(time)] + widths + [out_features], activation)
        self.time = time
        acts = [m for m in self.layers if not isinstance(m, nn.Linear)]
        self._linears = [m for m in self.layers if isinstance(m, nn.Linear)]
        self._act = activation_function(acts[0]) if acts else None
        self._act_backward = activation_backward(acts[0]) if acts else None
        self._closed_form = not acts or (self._act is not None and self._act_backward is not None)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not self._closed_form:
            return self.layers(torch.cat([x, t.to(x.dtype).expand(x.shape[0], 1)], 1) if self.time else x)
        return self.forward_saved(t, x)[0]

    def closed_form(self) -> bool:
        """Whether `forward_saved` / `vjp` apply (every activation has a known derivative)."""
        return self._closed_form

    def forward_saved(self, t: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(f(t, x), the input of every Linear layer) for `vjp`."""
        if self.time:
            x = torch.cat([x, t.to(x.dtype).expand(x.shape[0], 1)], 1)
        saved = []
        last = len(self._linears) - 1
        for i, lin in enumerate(self._linears):
            saved.append(x)
            x = F.linear(x, lin.weight, lin.bias)
            if i < last:
                assert self._act is not None
                x = self._act(x)
        return x, saved

    def vjp(self, saved: list[torch.Tensor], grad: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(grad . df/dx, [grad . df/dW_1, grad . df/db_1, ...]) in `parameters()` order, x without the time column."""
        grads: list[torch.Tensor] = []
        for i in range(len(self._linears) - 1, -1, -1):
            lin, x = self._linears[i], saved[i]
            grads.append(grad.sum(0))
            grads.append(torch.mm(grad.t(), x))
            weight = lin.weight if i or not self.time else lin.weight[:, :-1]
            grad = torch.mm(grad, weight)
            if i:
                assert self._act_backward is not None
                grad = self._act_backward(grad, x, x)  # x is act(z) of the layer below: act' from the output
        grads.reverse()
        return grad, grads


def _builder_net(in_channels: int, hidden: int, out_channels: int, conv: bool) -> nn.Sequential:
    """conv1x1 -> LeakyReLU(0.3) -> conv3x3 -> LeakyReLU(0.3) -> conv1x1 (Linear layers if not conv)."""
    if not (isinstance(hidden, int) and hidden > 0):
        raise ValueError(f"hidden must be a positive int for a learned initial state, got {hidden!r}")
    if out_channels < 1:
        raise ValueError(
            f"the initial-state network would output {out_channels} channels: dim is too small "
            f"for in_channels={in_channels}"
        )
    first: nn.Module
    middle: nn.Module
    last: nn.Module
    if conv:
        first, middle, last = (
            nn.Conv2d(in_channels, hidden, 1),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.Conv2d(hidden, out_channels, 1),
        )
    else:
        first, middle, last = nn.Linear(in_channels, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, out_channels)
    return nn.Sequential(first, nn.LeakyReLU(0.3), middle, nn.LeakyReLU(0.3), last)


class ZeroAugment(nn.Module):
    """h0 = the input padded with zeros to `dim` channels (ANODE; NODE when dim == in_channels).

    No parameters; `hidden` and `conv` are accepted for the shared builder signature and ignored.
    """

    def __init__(
        self, in_channels: int, dim: int | None = None, hidden: int | None = None, *, conv: bool = True
    ) -> None:
        super().__init__()
        dim = in_channels if dim is None else dim
        if dim < in_channels:
            raise ValueError(f"dim must be >= in_channels={in_channels}, got {dim}")
        self.extra = dim - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.extra:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], self.extra, *x.shape[2:])], 1)


class InitialVelocity(nn.Module):
    """(h0, m0) from an input x with in_channels channels (HB papers' `initial_velocity`).

    A small network produces o with 2*dim - in_channels channels; [x, o] is split into
    h0 = [x, o[:dim - in]] and m0 = o[dim - in:], so h0 keeps the raw input channels.
    """

    def __init__(self, in_channels: int, dim: int, hidden: int, *, conv: bool = True) -> None:
        super().__init__()
        self.net = _builder_net(in_channels, hidden, 2 * dim - in_channels, conv)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h0, m0 = torch.cat([x, self.net(x)], 1).split(self.dim, 1)
        return h0, m0


class AdamInitialState(nn.Module):
    """(h0, m0, v0) for AdamNODE from an input x.

    layout="moments" (default): as `InitialVelocity` for (h0, m0), and v0 = m0**2, the second moment
    that matches the first (zero variance), so v0 >= 0 as the v-activations expect.
    layout="official": the released code's builder: o has (3*dim - in)/2 channels and [x, o, o**2]
    is split into three blocks of dim channels (for MNIST, h0 = [x, o0..o3], m_c0 = [o4..o6, o0**2, o1**2]).
    The released code's momentum m_c is -m (`monode.dynamics.adam`), so m0 = -m_c0.
    """

    def __init__(self, in_channels: int, dim: int, hidden: int, *, conv: bool = True, layout: str = "moments") -> None:
        super().__init__()
        if layout == "moments":
            out = 2 * dim - in_channels
        elif layout == "official":
            if (3 * dim - in_channels) % 2:
                raise ValueError(
                    f"layout='official' needs 3*dim - in_channels even, got dim={dim}, in_channels={in_channels}"
                )
            out = (3 * dim - in_channels) // 2
        else:
            raise ValueError(f"layout must be 'moments' or 'official', got {layout!r}")
        self.net = _builder_net(in_channels, hidden, out, conv)
        self.dim, self.layout = dim, layout

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        o = self.net(x)
        if self.layout == "official":
            h0, m_c0, v0 = torch.cat([x, o, o * o], 1).split(self.dim, 1)
            return h0, -m_c0, v0
        h0, m0 = torch.cat([x, o], 1).split(self.dim, 1)
        return h0, m0, m0 * m0
