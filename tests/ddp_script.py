"""Run under `torchrun --nproc_per_node=2` by test_distributed: `monode train` twice in one process group,
arguments: OUT_DIR then the common training arguments. Writes OUT_DIR/two (3 epochs) and OUT_DIR/resumed
(2 epochs: the state a run killed after its epoch-1 checkpoint leaves, resumed by the test)."""

import sys

from monode.cli import main

out, common = sys.argv[1], sys.argv[2:]
for name, epochs in (("two", "3"), ("resumed", "2")):
    code = main(["train", *common, "--epochs", epochs, "--out", f"{out}/{name}"])
    if code:
        sys.exit(code)
