"""Dataset loaders: local files only, checksums verified before parsing, folder from --data-dir / MONODE_DATA_DIR."""

from ._files import DataIntegrityError, DataNotFoundError, resolve_data_dir, verify_checksums
from .cifar10 import load_cifar10, write_cifar10_like
from .mnist import load_mnist
from .physionet import PhysioNetRecord, load_physionet, physionet_feature_stats, physionet_tensors
from .plane_vibration import load_plane_vibration, load_silverbox, plane_vibration_windows
from .spirals import make_spirals
from .toy2d import TOY2D, sample_toy2d
from .walker2d import load_walker2d_rollouts, walker2d_windows

__all__ = [
    "DataIntegrityError",
    "DataNotFoundError",
    "resolve_data_dir",
    "verify_checksums",
    "load_mnist",
    "load_cifar10",
    "write_cifar10_like",
    "load_plane_vibration",
    "load_silverbox",
    "plane_vibration_windows",
    "load_walker2d_rollouts",
    "walker2d_windows",
    "PhysioNetRecord",
    "load_physionet",
    "physionet_feature_stats",
    "physionet_tensors",
    "make_spirals",
    "TOY2D",
    "sample_toy2d",
]
