"""The whole default job, end to end, against today's (the reference's) job, side by side (issue 24).

Runs ``optuna-seqclf run sst2-2k`` (all-MiniLM-L6-v2, the 36-point grid, 4 epochs, 5 replicas) twice in
this invocation, one after the other on an otherwise idle machine:

- ``reference``: ``--pruner none --confirm-top 0 --artifact-store none``: every point for all its epochs,
  the single seed's best, 5 replicas trained afresh (the job before issue 24);
- ``default``: no flags but the data: the defaults users get.

For each: wall time, training steps (trials, confirmation runs and replicas trained), the chosen point, its
dev score and the replicas' mean test F1, and the ratio of the two wall times.

    python bench/default_job_e2e.py [--corpus sst2-2k] [--only reference|default]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SHARED_DATA, minilm, record

JOBS = {"reference": ["--pruner", "none", "--confirm-top", "0", "--artifact-store", "none"], "default": []}


def run_job(name: str, corpus: Path, work: Path) -> dict[str, object]:
    import optuna

    study, out = f"e2e-{name}", work / f"models-{name}"
    cmd = [sys.executable, "-m", "optuna_seqclf", "run", str(corpus), "--model", minilm(), "--study-name", study,
           "--storage", f"sqlite:///{work / (study + '.db')}", "--output-dir", str(out), "--no-track", "--quiet",
           *JOBS[name]]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}\n{done.stderr[-3000:]}")
    trials = optuna.load_study(study_name=study, storage=f"sqlite:///{work / (study + '.db')}").trials
    # a trial's steps: its epochs trained x steps per epoch (its history has one entry per epoch)
    n_train = len((corpus / "train.txt").read_text(encoding="utf-8").splitlines()) - 1  # the header
    runs = [t for t in trials if "batch_size" in t.params and "duplicate_of" not in t.user_attrs]
    steps = sum(len(t.user_attrs.get("dev_history", [])) * -(-n_train // int(t.params["batch_size"])) for t in runs)
    summary = json.loads((out / "replicas_summary.json").read_text())
    trained = [r for r in summary["replicas"] if r.get("from_trial") is None]
    steps += len(trained) * 4 * -(-n_train // int(summary["params"]["batch_size"]))
    return {"wall_s": round(wall, 1), "steps": steps, "point": summary["params"],
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in runs),
            "confirmation_runs": sum("confirm_seed" in t.user_attrs for t in runs),
            "dev": summary["best_dev_f1"], "test_f1": summary["mean"]["test_f1"],
            "replicas_from_study": len(summary["replicas"]) - len(trained)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", default="sst2-2k")
    parser.add_argument("--only", choices=sorted(JOBS))
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="e2e-", dir=ROOT / "bench") as tmp:
        for name in [args.only] if args.only else list(JOBS):
            results[name] = run_job(name, (SHARED_DATA / args.corpus).resolve(), Path(tmp))
            print(name, results[name], flush=True)
    lines = ["| job | wall time | training steps | grid points pruned | confirmation runs | chosen point | dev F1 "
             "| replicas' mean test F1 | replicas from the study |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        p = r["point"]
        lines.append(f"| {name} (`{' '.join(JOBS[name]) or 'defaults'}`) | {r['wall_s'] / 60:.1f} min | "
                     f"{r['steps']:,} | {r['pruned']} | {r['confirmation_runs']} | "
                     f"{p['batch_size']}, {p['learning_rate']:g} | {r['dev']:.4f} | "
                     f"{r['test_f1']:.4f} | {r['replicas_from_study']} |")
    if len(results) == 2:
        ratio = results["default"]["wall_s"] / results["reference"]["wall_s"]  # type: ignore[operator]
        lines += ["", f"default / reference wall time: **{ratio:.2f}x**"]
    model = "all-MiniLM-L6-v2" if "minilm_l6_v2" in minilm() else minilm()
    record(f"Issue 24: the default job end to end ({args.corpus}, {model})", lines)


if __name__ == "__main__":
    main()
