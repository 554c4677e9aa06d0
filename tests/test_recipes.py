"""The cluster recipes, run: examples/slurm's scripts with a fake `sbatch` and SLURM's environment, and
examples/kubernetes' Jobs parsed and their container commands run, against a throwaway PostgreSQL (CPU)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from conftest import EXAMPLE_DATA, ROOT

SLURM, KUBERNETES = ROOT / "examples" / "slurm", ROOT / "examples" / "kubernetes"
BIN = Path(sys.executable).parent  # where `optuna-seqclf` is installed

# A fake sbatch: an array job's tasks start at once (as SLURM would on free nodes), each with its task id;
# a job with --dependency=afterany:ID runs once every task of ID has ended.
FAKE_SBATCH = textwrap.dedent('''\
    #!{python}
    import json, os, subprocess, sys, time
    from pathlib import Path
    state = Path(os.environ["FAKE_SLURM_DIR"])
    args = sys.argv[1:]
    with (state / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps(args) + "\\n")
    opts = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    script = args[-1]
    job = str(1000 + len(list(state.glob("job-*"))))
    (state / f"job-{{job}}").write_text("")
    if "dependency" in opts:
        for dep in opts["dependency"].split(":")[1:]:
            for pid in (state / f"job-{{dep}}").read_text().split():
                while Path(f"/proc/{{pid}}").exists() and "zombie" not in Path(f"/proc/{{pid}}/status").read_text():
                    time.sleep(0.5)
        tasks = [None]
    else:
        first, last = map(int, opts.get("array", "0-0").split("-"))
        tasks = list(range(first, last + 1))
    pids = []
    for task in tasks:
        env = {{**os.environ, "SLURM_JOB_ID": job, "SLURM_CPUS_PER_TASK": "1"}}
        if task is not None:
            env.update(SLURM_ARRAY_JOB_ID=job, SLURM_ARRAY_TASK_ID=str(task))
        log = open(state / f"out-{{job}}-{{task}}.log", "w")
        proc = subprocess.Popen(["bash", script], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        pids.append(proc.pid)
        if task is None:
            proc.wait()
            (state / f"rc-{{job}}-{{task}}").write_text(str(proc.returncode))
    (state / f"job-{{job}}").write_text(" ".join(map(str, pids)))
    print(job)
''')


def _config(path: Path, model: Path) -> Path:
    path.write_text(f'model = {json.dumps(str(model))}\nbatch-sizes = [8, 16]\nlearning-rates = [1e-3, 1e-4, 3e-5]\n'
                    'epochs = 1\nno-track = true\n', encoding="utf-8")
    return path


def _check_study(storage: str, name: str, points: int) -> None:
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    complete = Counter((t.params["batch_size"], t.params["learning_rate"])
                       for t in trials if t.state == TrialState.COMPLETE)
    assert len(complete) == points and set(complete.values()) == {1}, complete
    assert not [t for t in trials if t.state == TrialState.RUNNING]


@pytest.mark.slow
@pytest.mark.postgres
def test_slurm_array_then_dependent_train(workdir: Path, tiny_model: Path, postgres_url: str) -> None:
    fake = workdir / "fake-bin"
    fake.mkdir()
    (fake / "sbatch").write_text(FAKE_SBATCH.format(python=sys.executable))
    (fake / "sbatch").chmod(0o755)
    state = workdir / "slurm"
    state.mkdir()
    env = {**os.environ, "PATH": f"{fake}:{BIN}:{os.environ['PATH']}", "FAKE_SLURM_DIR": str(state),
           "SEQCLF_STORAGE": postgres_url, "SEQCLF_DATA": str(EXAMPLE_DATA), "SEQCLF_STUDY": "slurm",
           "SEQCLF_CONFIG": str(_config(workdir / "study.toml", tiny_model)), "SEQCLF_DEVICE": "cpu",
           "SEQCLF_OUTPUT": str(workdir / "models"), "SEQCLF_SEEDS": "1,2"}
    done = subprocess.run(["bash", str(SLURM / "submit.sh"), "3"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"tune array 1000 \(3 workers\), then train 1001\n", done.stdout)
    calls = [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]
    assert calls[0][:2] == ["--parsable", "--array=0-2"]
    assert calls[1][:2] == ["--parsable", "--dependency=afterany:1000"]
    logs = {p.name: p.read_text() for p in state.glob("out-1000-*.log")}
    assert len(logs) == 3 and all("Traceback" not in log and "Best Configuration is" in log for log in logs.values())
    _check_study(postgres_url, "slurm", 6)
    assert (state / "rc-1001-None").read_text() == "0", (state / "out-1001-None.log").read_text()
    replicas = sorted(p.name.rsplit("_", 1)[1] for p in (workdir / "models").iterdir() if p.is_dir())
    assert replicas == ["1", "2"]


def _manifest(name: str) -> dict:  # type: ignore[type-arg]
    [doc] = list(yaml.safe_load_all((KUBERNETES / name).read_text(encoding="utf-8")))
    return doc


def test_kubernetes_manifests_parse_as_jobs() -> None:
    tune, train = _manifest("tune-job.yaml"), _manifest("train-job.yaml")
    for job in (tune, train):
        assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
        [container] = job["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["optuna-seqclf"]
        storage = next(e for e in container["env"] if e["name"] == "SEQCLF_STORAGE")
        assert storage["valueFrom"]["secretKeyRef"] == {"name": "seqclf-db", "key": "url"}
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    spec = tune["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"] == 8


def _container_command(name: str, values: dict[str, str]) -> list[str]:
    """The container's command line as the kubelet builds it: $(VAR) replaced by the container's env."""
    [container] = _manifest(name)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value", "") for e in container["env"]} | values
    return [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container["command"] + container["args"]]


@pytest.mark.slow
@pytest.mark.postgres
def test_kubernetes_containers_run(workdir: Path, tiny_model: Path, postgres_url: str) -> None:
    values = {"SEQCLF_STORAGE": postgres_url, "SEQCLF_DATA": str(EXAMPLE_DATA), "SEQCLF_STUDY": "k8s",
              "SEQCLF_CONFIG": str(_config(workdir / "study.toml", tiny_model)), "SEQCLF_DEVICE": "cpu",
              "SEQCLF_OUTPUT": str(workdir / "models")}
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    pods = [subprocess.Popen(_container_command("tune-job.yaml", values), env={**env, "JOB_COMPLETION_INDEX": str(i)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for pod in pods:
        _, err = pod.communicate(timeout=600)
        assert pod.returncode == 0, err
    _check_study(postgres_url, "k8s", 6)
    train = _container_command("train-job.yaml", values)
    train[train.index("--seeds") + 1] = "1"  # one replica is enough to see the command work
    done = subprocess.run(train, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert len([p for p in (workdir / "models").iterdir() if p.is_dir()]) == 1


def test_slurm_scripts_are_valid_bash_and_need_their_settings(workdir: Path) -> None:
    for script in ("tune-array.sbatch", "train.sbatch", "submit.sh"):
        assert subprocess.run(["bash", "-n", str(SLURM / script)], capture_output=True).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEQCLF_")}
    missing = subprocess.run(["bash", str(SLURM / "tune-array.sbatch")], env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "set SEQCLF_STORAGE" in missing.stderr
