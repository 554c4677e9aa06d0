"""P3: time per trained example, the reference toolkit's way against `optuna-seqclf tune`, same grid point.

The reference way, reproduced (not estimated): every grid point is a fresh Python process that loads the
TSV with `datasets`, pads every sentence to 512 tokens, builds the HF Trainer with its default arguments
(checkpoints every 500 steps, evaluation at the end), trains, saves the model and evaluates on dev.
Padding to 512 makes each step so slow on a CPU that it trains on the first --reference-examples training
sentences only; time per trained example includes its start-up, as the reference pays it per point.

    python bench/reference_way.py [--batch-size 8] [--lr 5e-5] [--reference-examples 96]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

REFERENCE_TRIAL = r'''
import sys, time
import numpy as np
from datasets import load_dataset
from sklearn.metrics import f1_score
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments)

data_dir, model_name, out, bs, lr, n = sys.argv[1:7]
raw = load_dataset("csv", data_files={"train": f"{data_dir}/train.txt", "validation": f"{data_dir}/dev.txt"},
                   delimiter="\t", quoting=3)
raw["train"] = raw["train"].select(range(int(n)))
labels = sorted(set(raw["train"]["Label"]))
tok = AutoTokenizer.from_pretrained(model_name)
def encode(batch):
    enc = tok(batch["sentence"], padding="max_length", max_length=512, truncation=True)
    enc["label"] = [labels.index(x) for x in batch["Label"]]
    return enc
ds = raw.map(encode, batched=True)
model = AutoModelForSequenceClassification.from_pretrained(model_name, num_labels=len(labels))
args = TrainingArguments(output_dir=out, per_device_train_batch_size=int(bs), learning_rate=float(lr),
                         num_train_epochs=1, report_to="none", disable_tqdm=True)
def metrics(p):
    return {"f1": f1_score(p.label_ids, np.argmax(p.predictions, -1), average="macro")}
trainer = Trainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["validation"],
                  compute_metrics=metrics)
t0 = time.perf_counter()
trainer.train()
train_s = time.perf_counter() - t0
trainer.save_model()
print("RESULT", train_s, trainer.evaluate()["eval_f1"], flush=True)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--reference-examples", type=int, default=96)
    args = parser.parse_args()

    import optuna

    model = _common.minilm()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ref = subprocess.run([sys.executable, "-c", REFERENCE_TRIAL, str(_common.SST2_2K), model, f"{tmp}/ref",
                              str(args.batch_size), str(args.lr), str(args.reference_examples)],
                             capture_output=True, text=True, check=True)
        ref_wall = time.perf_counter() - started
        ref_train_s = float(ref.stdout.split("RESULT")[1].split()[0])
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "optuna_seqclf", "tune", str(_common.SST2_2K), "--model", model,
                        "--study-name", "p3", "--batch-sizes", str(args.batch_size), "--learning-rates",
                        f"{args.lr:g}", "--epochs", "1", "--quiet"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        our_wall = time.perf_counter() - started
        study = optuna.load_study(study_name="p3", storage=f"sqlite:///{Path(tmp) / 'studies' / 'p3.db'}")
        ours_f1 = study.best_value
    n_ours = 2000
    ref_per, our_per = ref_wall / args.reference_examples, our_wall / n_ours
    ref_step = ref_train_s / -(-args.reference_examples // args.batch_size)
    _common.record("P3 time per trained example: the reference's way vs optuna-seqclf", [
        f"SST-2 2k, all-MiniLM-L6-v2, batch size {args.batch_size}, lr {args.lr:g}, 1 epoch; whole commands, "
        "start-up included",
        f"- reference way (fresh process, pad to 512, default Trainer, checkpoint + save): "
        f"{args.reference_examples} examples in {ref_wall:.1f} s = {ref_per * 1000:.0f} ms per example "
        f"({ref_step:.2f} s per training step)",
        f"- optuna-seqclf tune (one grid point, 2000 examples, dynamic padding, max length 128): {our_wall:.1f} s "
        f"= {our_per * 1000:.1f} ms per example (dev F1 {ours_f1:.4f})",
        f"- **ratio reference / optuna-seqclf per trained example: {ref_per / our_per:.1f}x** (target >= 50x); "
        f"training steps alone: {ref_train_s / args.reference_examples / our_per:.1f}x",
    ])


if __name__ == "__main__":
    main()
