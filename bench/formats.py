"""Issue 17: read + validate + tokenise the full SST-2 from each input format, as a study does at start-up.

The corpus (../shared/data/sst2, TSV) is converted once, the way Hugging Face users write these files:
``datasets``' ``to_csv``, ``to_json(lines=True)``, ``to_parquet`` per split, and ``DatasetDict.save_to_disk``.
Then each format is read, validated and tokenised (``read_corpus`` + ``encode_corpus``, all-MiniLM-L6-v2's
tokenizer, max length 128) in rounds, the TSV baseline in every round, formats in a different order each
round; the median of each is compared with the TSV's. Goal: every format within 1.2x the TSV time.

    python bench/formats.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common

sys.path.insert(0, str(_common.ROOT / "tests"))
FORMATS = ("tsv", "csv", "jsonl", "parquet", "saved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from conftest import convert_corpus  # the tests' converter: datasets' own writers
    from optuna_seqclf import DataSpec
    from optuna_seqclf.data.corpus import encode_corpus, read_corpus
    from optuna_seqclf.training.model import load_tokenizer

    tokenizer = load_tokenizer(_common.minilm())
    with tempfile.TemporaryDirectory() as tmp:
        folders = {"tsv": _common.SST2_FULL}
        for fmt in FORMATS[1:]:
            folders[fmt] = convert_corpus(_common.SST2_FULL, Path(tmp) / fmt, fmt, dev_name="validation")
        sizes = {fmt: sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6
                 for fmt, folder in folders.items()}
        reads: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
        totals: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
        reference = read_corpus(DataSpec(folders["tsv"]))
        for r in range(args.rounds):
            for fmt in FORMATS[r % len(FORMATS):] + FORMATS[:r % len(FORMATS)]:
                started = time.perf_counter()
                corpus = read_corpus(DataSpec(folders[fmt]))
                reads[fmt].append(time.perf_counter() - started)
                encode_corpus(corpus, tokenizer, 128)
                totals[fmt].append(time.perf_counter() - started)
                assert corpus.train.texts == reference.train.texts and corpus.dev.labels == reference.dev.labels
    base = statistics.median(totals["tsv"])
    lines = [f"{len(reference.train)} train / {len(reference.dev)} dev / {len(reference.test)} test rows; "
             f"median of {args.rounds} rounds (formats rotated each round); all-MiniLM-L6-v2 tokenizer, "
             "max length 128", "",
             "| Format | On disk (MB) | Read + validate (s) | + tokenise (s) | Ratio to TSV |", "|---|---|---|---|---|"]
    for fmt in FORMATS:
        total = statistics.median(totals[fmt])
        lines.append(f"| {fmt} | {sizes[fmt]:.1f} | {statistics.median(reads[fmt]):.2f} | {total:.2f} | "
                     f"**{total / base:.2f}x** |")
    worst = max(statistics.median(totals[fmt]) / base for fmt in FORMATS)
    lines += ["", f"Goal (every format within 1.2x the TSV time): {'met' if worst <= 1.2 else 'NOT met'} "
                  f"(worst {worst:.2f}x)."]
    _common.record("Issue 17: reading the full SST-2 from each format", lines)


if __name__ == "__main__":
    main()
