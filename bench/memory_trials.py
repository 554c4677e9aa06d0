"""P6: resident memory across a 36-trial study. Nothing (models, optimizers, datasets, callbacks) may be kept
alive from one trial to the next, so RSS must stay flat after the 2nd trial.

Baseline in the same run: the RSS after trial 2 (the process has loaded everything once by then).
Short trials (--max-steps) keep this quick: a leak per trial shows whatever the trial length.

    python bench/memory_trials.py [--max-steps 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-steps", type=int, default=4)
    args = parser.parse_args()

    from optuna_seqclf import DataSpec, SearchSpace, StudySpec, TrainSettings, configure_process, tune
    from optuna_seqclf.tracking import Tracking

    configure_process()  # the command line's process settings (threads, glibc malloc), as `tune` runs there

    rss: list[float] = []

    def progress(message: str) -> None:
        if message.startswith("["):  # one line per finished trial
            rss.append(_common.rss_mb())

    with tempfile.TemporaryDirectory() as tmp:
        spec = StudySpec(study_name="mem", storage=f"sqlite:///{tmp}/mem.db")
        settings = TrainSettings(model=_common.minilm(), max_steps=args.max_steps)
        data = DataSpec(_common.ROOT / "examples" / "data" / "sentiment")
        result = tune(spec, data, settings, SearchSpace(), tracking=Tracking(aim=Path(tmp) / "logs"), progress=progress)
    assert len(rss) == 36 and result.best is not None, "every trial should have finished"
    growth = rss[-1] - rss[1]
    _common.record("P6 memory across a 36-trial study", [
        f"full default grid (36 points), all-MiniLM-L6-v2, example corpus, {args.max_steps} steps per trial, "
        "Aim tracking on",
        f"- RSS after trial 1: {rss[0]:.0f} MB; after trial 2 (baseline): {rss[1]:.0f} MB; max {max(rss):.0f} MB; "
        f"after trial 36: {rss[-1]:.0f} MB",
        f"- RSS every 6th trial: {', '.join(f'{v:.0f}' for v in rss[::6])} MB",
        f"- **growth from trial 2 to trial 36: {growth:+.0f} MB** (target <= 50 MB)",
    ])


if __name__ == "__main__":
    main()
