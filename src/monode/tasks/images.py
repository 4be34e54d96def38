"""Image classification: MNIST and CIFAR-10 (HBNODE §5.2, AdamNODE, NesterovNODE; NAG-solver paper).

The papers' classifier (`monode.layers.image_classifier`): the model's initial state from the image
(zero augmentation for NODE/ANODE, the learned initial-velocity network otherwise), the conv field
DF(dim, hidden) with a time channel integrated over the model's span, and Linear(dim * pixels -> 10)
on h(T); cross-entropy, Adam, gradient clipping. `resnet` is the NAG-solver paper's baseline: the
Euler discretisation of the NODE block with untied weights, `resnet_depth` residual steps.

Presets: "paper" is the HBNODE paper's protocol (MNIST: batch 64, lr 5e-4, 40 epochs, clip 10,
dopri5 tol 1e-4; CIFAR-10: batch 256, lr 1e-3 with StepLR(1000 iterations, 0.95), clip 1, tol 1e-3,
40 epochs); "quick" trains on a subset for a few epochs so a CPU run takes minutes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from ..data import load_cifar10, load_mnist
from ..dynamics import MODELS
from ..layers import image_classifier
from ._base import BenchmarkTask, ScoredTask
from ._settings import RunSettings

Loader = Callable[..., tuple[Tensor, Tensor]]


class ImageClassification(BenchmarkTask):
    """One image benchmark: its loader and image geometry (models use their preset named after the task)."""

    models = tuple(MODELS) + ("resnet",)
    metric = "accuracy"

    def __init__(
        self,
        name: str,
        summary: str,
        loader: Loader,
        in_channels: int,
        image_size: int,
        presets: dict[str, dict[str, Any]],
    ) -> None:
        self.name, self.summary, self.presets = name, summary, presets  # type: ignore[misc]
        self.loader = loader
        self.in_channels, self.image_size = in_channels, image_size

    def build(self, s: RunSettings) -> ScoredTask:
        train = self.loader(s.data_dir, "train", subset=s.get("subset"))
        test = self.loader(s.data_dir, "test", subset=s.get("test_subset"))
        model = image_classifier(
            s.model,
            self.name,
            in_channels=self.in_channels,
            image_size=self.image_size,
            resnet_depth=int(s["resnet_depth"]),
            **s.solver(),
        )
        return ScoredTask(model, train, test, _score)


def _score(model: nn.Module, batch: tuple[Tensor, ...]) -> tuple[Tensor, dict[str, Tensor]]:
    x, y = batch
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, y)
    return loss, {"accuracy": (logits.argmax(1) == y).float().mean()}


_SOLVER = dict(method="dopri5", adjoint=True, resnet_depth=10)
_MNIST = dict(_SOLVER, epochs=40, lr=5e-4, batch_size=64, grad_clip=10.0, rtol=1e-4, atol=1e-4, subset=None,
              test_subset=None)  # fmt: skip
_CIFAR10 = dict(_SOLVER, epochs=40, lr=1e-3, lr_step=(1000, 0.95), batch_size=256, grad_clip=1.0, rtol=1e-3,
                atol=1e-3, eval_every=2, subset=None, test_subset=None)  # fmt: skip

MNIST = ImageClassification(
    "mnist", "MNIST digits (IDX files, --data-dir): accuracy vs forward/backward NFE and time", load_mnist,
    in_channels=1, image_size=28,
    presets={"paper": _MNIST,
             "quick": {**_MNIST, **dict(epochs=3, lr=1e-3, rtol=1e-3, atol=1e-3, subset=2048, test_subset=1000)}},
)  # fmt: skip

CIFAR10 = ImageClassification(
    "cifar10", "CIFAR-10 (python batches, --data-dir): accuracy vs forward/backward NFE and time", load_cifar10,
    in_channels=3, image_size=32,
    presets={"paper": _CIFAR10,
             "quick": {**_CIFAR10, **dict(epochs=2, lr_step=None, batch_size=64, eval_every=1, subset=1024,
                                          test_subset=500)}},
)  # fmt: skip

__all__ = ["ImageClassification", "MNIST", "CIFAR10"]
