"""P7: read, validate and tokenise the whole SST-2 (60k train rows) once, as a study does at start-up.

Baseline in the same run: the tokenizer alone on the same texts (the floor no reader can beat), so the
ratio shows what reading, validating and building the datasets add. Also reports the memory the
prepared corpus takes.

    python bench/tokenise_full.py
"""

from __future__ import annotations

import time

import _common


def main() -> None:
    import datasets  # noqa: F401  (imported before the baseline: its import is not the corpus)

    from optuna_seqclf import DataSpec
    from optuna_seqclf.data.corpus import encode_corpus, read_corpus
    from optuna_seqclf.training.model import load_tokenizer

    tokenizer = load_tokenizer(_common.minilm())
    before = _common.rss_mb()
    started = time.perf_counter()
    corpus = read_corpus(DataSpec(_common.SST2_FULL))
    read_s = time.perf_counter() - started
    encoded = encode_corpus(corpus, tokenizer, 128)
    total_s = time.perf_counter() - started
    after = _common.rss_mb()
    rows = len(corpus.train) + len(corpus.dev) + len(corpus.test)
    texts = [*corpus.train.texts, *corpus.dev.texts, *corpus.test.texts]
    started = time.perf_counter()
    tokenizer(texts, truncation=True, max_length=128, padding=False)
    floor_s = time.perf_counter() - started
    raw_mb = sum(_common.SST2_FULL.joinpath(f"{s}.txt").stat().st_size for s in ("train", "dev", "test")) / 1e6
    arrow_mb = sum(d.data.nbytes for d in (encoded.train, encoded.dev, encoded.test)) / 1e6
    _common.record("P7 read + validate + tokenise the full SST-2 once", [
        f"{rows} rows ({len(corpus.train)} train / {len(corpus.dev)} dev / {len(corpus.test)} test), "
        f"{raw_mb:.1f} MB of TSV, all-MiniLM-L6-v2 tokenizer, max length 128",
        f"- read + validate: {read_s:.2f} s; **read + validate + tokenise + datasets: {total_s:.2f} s** "
        f"(target <= 10 s)",
        f"- baseline, the tokenizer alone on the same texts: {floor_s:.2f} s "
        f"(ratio whole / tokenizer alone: {total_s / floor_s:.2f})",
        f"- memory: RSS +{after - before:.0f} MB for the prepared corpus (raw texts once, plus the "
        f"tokenised Arrow tables of {arrow_mb:.1f} MB); trials share it, nothing is copied per trial",
    ])


if __name__ == "__main__":
    main()
