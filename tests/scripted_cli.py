"""``python tests/scripted_cli.py ARGS``: the command line exactly as ``optuna-seqclf ARGS``, with the scripted
trainer (tests/scripted.py) in place of ``fine_tune``, for tests whose claim is the protocol (workers, kills,
database restarts, the confirmation stage), not the training. ``SCRIPTED_STEP_S`` sets how long each
training step takes (default 0.05 s), so a trial lasts long enough to be killed in the middle of it.

Only the commands that write replicas (``train``, ``run``) load the (untrained) model: a trial's objective
never reads it, and importing the model's classes is half a scripted ``tune`` process's time. With
``SCRIPTED_KEEP=1`` trials load it too, so that they keep weights (``--artifact-store``).
"""

from __future__ import annotations

import os
import sys

from optuna_seqclf.cli.commands import main
from scripted import ScriptedTrainer

if __name__ == "__main__":
    writes_replicas = (len(sys.argv) > 1 and sys.argv[1] in ("train", "run")) or os.environ.get("SCRIPTED_KEEP") == "1"
    main(trainer=ScriptedTrainer(step_seconds=float(os.environ.get("SCRIPTED_STEP_S", "0.05")),
                                 with_model=writes_replicas))
