"""The command line's own behaviour: instant --help and --version (no torch import), complete listings."""

from __future__ import annotations

import subprocess
import sys

from monode.cli import main


def test_help_and_version_do_not_import_torch() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from monode.cli import main\n"
        "for argv in (['--help'], ['train', '--help'], ['compare', '--help'], ['eval', '--help'], ['--version']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv) == 0, argv\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "import monode\n"
        "assert 'torch' not in sys.modules and monode.__version__\n"
        "monode.odeint\n"
        "assert 'torch' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_models_lists_every_model_and_the_resnet_baseline(capsys) -> None:
    from monode.dynamics import MODELS

    assert main(["models"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [*MODELS, "resnet"]
