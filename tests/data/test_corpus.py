"""Reading the TSV splits: what must just work, and what must fail with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLE_DATA, SST2_2K, write_corpus, write_split
from optuna_seqclf.data.corpus import encode_corpus, label_sort_key, read_corpus
from optuna_seqclf.errors import DataError
from optuna_seqclf.settings import DataSpec

GOOD = "sentence\tLabel\nI liked it\tpos\nI hated it\tneg\n"


def test_example_corpus_reads() -> None:
    corpus = read_corpus(DataSpec(EXAMPLE_DATA))
    assert corpus.label_names == ("0", "1")
    assert len(corpus.train) == 46 and len(corpus.dev) == 12 and len(corpus.test) == 12
    assert corpus.id2label == {0: "0", 1: "1"}


def test_tolerated_formatting(tmp_path: Path) -> None:
    long_text = " ".join(["word"] * 5000)
    text = (
        "\ufeffSentence\tlabel\r\n"
        "it's \"quoted\" and 'single' \\ backslash\tpos\r\n"
        f"{long_text}\tneg\r\n"
        "\r\n\n\n"
    )
    write_corpus(tmp_path, text)
    corpus = read_corpus(DataSpec(tmp_path))
    assert corpus.train.texts[0] == "it's \"quoted\" and 'single' \\ backslash"
    assert corpus.train.labels == ("pos", "neg")
    assert corpus.label_names == ("neg", "pos")
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(str(_tiny_tokenizer_dir(tmp_path)))
    encoded = encode_corpus(corpus, tiny, max_length=32)
    assert max(encoded.train["length"]) == 32  # the long line is truncated, not rejected


def _tiny_tokenizer_dir(tmp_path: Path) -> Path:
    from tiny_model import build_tiny_bert

    return build_tiny_bert(tmp_path / "tok", ["word it's quoted single backslash"], vocab_size=60)


def test_labels_sorted_numerically_then_by_name() -> None:
    assert sorted(["10", "2", "Sci/Tech", "1", "Business"], key=label_sort_key) == [
        "1", "2", "10", "Business", "Sci/Tech"]


def test_text_pair_column(tmp_path: Path) -> None:
    write_corpus(tmp_path, "premise\thypothesis\tLabel\nA man sleeps\tA person rests\tyes\nA cat\tA car\tno\n")
    corpus = read_corpus(DataSpec(tmp_path, text_column="premise", text_pair_column="hypothesis"))
    assert corpus.train.pairs == ("A person rests", "A car")


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    write_corpus(tmp_path, GOOD)
    before = read_corpus(DataSpec(tmp_path)).fingerprint
    write_split(tmp_path, "test", GOOD + "one more\tpos\n")
    assert read_corpus(DataSpec(tmp_path)).fingerprint != before


@pytest.mark.parametrize(
    ("train", "message"),
    [
        ("", "train.txt: file is empty"),
        ("sentence\tLabel\n", "train.txt: has a header row but no examples"),
        ("I liked it\t1\nI hated it\t0\n", "train.txt:1: no column 'sentence' in the header"),
        ("text\tLabel\nok\t1\nbad\t0\n", "columns: 'text', 'Label'"),
        ("sentence\tLabel\nok\t1\nbad\t0\textra\n", "train.txt:3: 3 tab-separated fields, but the header has 2"),
        ("sentence\tLabel\nok\t1\nbad\n", "train.txt:3: 1 tab-separated fields, but the header has 2"),
        ("sentence\tLabel\nok\t1\n \t0\n", "train.txt:3: the text column 'sentence' is empty"),
        ("sentence\tLabel\nok\t1\nbad\t\n", "train.txt:3: the label column 'Label' is empty"),
        ("sentence\tLabel\nok\t1\nfine\t1\n", "every example has label '1'"),
    ],
)
def test_bad_train_split(tmp_path: Path, train: str, message: str) -> None:
    write_corpus(tmp_path, train, dev=GOOD, test=GOOD)
    with pytest.raises(DataError, match=None) as info:
        read_corpus(DataSpec(tmp_path))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_dev_label(tmp_path: Path) -> None:
    write_corpus(tmp_path, GOOD, dev="sentence\tLabel\nmeh\tneutral\n")
    with pytest.raises(DataError, match=r"dev.txt:2: label 'neutral' does not occur in .*train.txt"):
        read_corpus(DataSpec(tmp_path))


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    write_corpus(tmp_path, GOOD)
    write_split(tmp_path, "test", b"sentence\tLabel\nok\tpos\ncaf\xe9\tneg\n")
    with pytest.raises(DataError, match=r"test.txt:3: byte 0xe9 is not valid UTF-8"):
        read_corpus(DataSpec(tmp_path))


def test_missing_folder_and_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data folder not found"):
        read_corpus(DataSpec(tmp_path / "nope"))
    write_split(tmp_path, "train", GOOD)
    write_split(tmp_path, "dev", GOOD)
    with pytest.raises(DataError, match=r"test.txt: file not found"):
        read_corpus(DataSpec(tmp_path))


@pytest.mark.skipif(not (SST2_2K / "train.txt").exists(), reason="needs ../shared/data")
def test_reads_sst2_sample() -> None:
    corpus = read_corpus(DataSpec(SST2_2K))
    assert (len(corpus.train), len(corpus.dev), len(corpus.test)) == (2000, 400, 872)
    assert corpus.label_names == ("0", "1")
