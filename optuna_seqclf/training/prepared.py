"""Everything read before training: the validated corpus, a tokenizer that fits the model, the tokenised
splits. Built once per process and shared by ``tune``, ``train_replicas`` and ``run``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from optuna_seqclf.data.corpus import Corpus, EncodedSplits, encode_corpus, encode_labels, read_corpus
from optuna_seqclf.settings import DataSpec, MachineSettings, TrainSettings
from optuna_seqclf.training.loop import EvalResult
from optuna_seqclf.training.lora import check_lora
from optuna_seqclf.training.model import check_device, check_model_config, load_tokenizer
from optuna_seqclf.training.outputs import failed_run

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class Prepared:
    """The corpus and its tokenizer, checked; the splits tokenised on first use, once per max length."""

    def __init__(self, corpus: Corpus, tokenizer: PreTrainedTokenizerBase) -> None:
        self.corpus = corpus
        self.tokenizer = tokenizer
        self._encoded: dict[int, EncodedSplits] = {}

    def failed_run(self, dev: EvalResult) -> str | None:
        """Why a run with this dev evaluation counts as failed (``training.outputs.failed_run``), or None."""
        import numpy as np

        corpus = self.corpus
        train_truth = np.asarray(corpus.train.labels, np.float64) if corpus.task == "regression" else None
        truth = np.asarray(encode_labels(corpus.dev.labels, corpus.task, corpus.label2id))
        return failed_run(corpus.task, truth, dev.predictions, dev.metrics, corpus.label_names, train_truth)

    def encoded(self, max_seq_length: int) -> EncodedSplits:
        """The three splits tokenised (truncated to ``max_seq_length``, not padded); tokenised only once."""
        if max_seq_length not in self._encoded:
            self._encoded[max_seq_length] = encode_corpus(self.corpus, self.tokenizer, max_seq_length)
        return self._encoded[max_seq_length]


def prepare(data: DataSpec, settings: TrainSettings, machine: MachineSettings | None = None) -> Prepared:
    """Read and validate all three splits, check the device, load the tokenizer and check the model's config.

    Every input problem is raised here, before any model is trained.
    """
    corpus = read_corpus(data, settings.task)
    check_device(machine or MachineSettings())
    tokenizer = load_tokenizer(settings.tokenizer_name)
    check_model_config(settings.model, tokenizer)
    if settings.lora is not None:  # peft installed, and its targets in the model (no weights loaded)
        check_lora(settings.model, settings.lora, 1 if settings.task == "regression" else len(corpus.label_names))
    return Prepared(corpus, tokenizer)
