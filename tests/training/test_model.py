"""Loading: trials train on their own copy of the weights, not the checkpoint's file mapping."""

from __future__ import annotations

import gc

import pytest
import torch

import optuna_seqclf.training.model as model_lib
from conftest import CPU
from optuna_seqclf import HParams
from optuna_seqclf.training.loop import fine_tune


def _mappings() -> list[tuple[int, int, str]]:
    """(start, end, file or "") of this process's memory maps (Linux)."""
    out = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            out.append((start, end, fields[5] if len(fields) >= 6 else ""))
    return out


def _inside_checkpoint_mapping(model: torch.nn.Module) -> list[str]:
    """Names of the parameters whose memory lies in a memory-mapped ``*.safetensors`` file."""
    spans = [(a, b) for a, b, name in _mappings() if name.endswith(".safetensors")]
    return [name for name, p in model.named_parameters() if any(a <= p.data_ptr() < b for a, b in spans)]


def test_cpu_models_train_on_their_own_copy_of_the_weights(sst2) -> None:  # type: ignore[no-untyped-def]
    """transformers leaves a CPU model's weights in the checkpoint's copy-on-write file mapping, which
    made every trial's first optimizer step fault the whole model in; trials train on a copy instead."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("reads /proc/self/maps")
    settings, prepared, encoded = sst2
    loaded = model_lib.load_model(settings.model, prepared.corpus.id2label)
    mapped = _inside_checkpoint_mapping(loaded)
    assert "bert.embeddings.word_embeddings.weight" in mapped  # what the copy is for
    before = {name: p.detach().clone() for name, p in loaded.named_parameters()}
    loaded.classifier.extra = loaded.bert.embeddings.word_embeddings  # a tied parameter stays tied
    owned = model_lib.own_weights(loaded)
    assert _inside_checkpoint_mapping(owned) == []
    assert owned.classifier.extra.weight is owned.bert.embeddings.word_embeddings.weight
    assert all(torch.equal(before[name], p) for name, p in owned.named_parameters())
    result = fine_tune(settings.model, prepared.tokenizer, encoded.train.select(range(32)),
                       encoded.dev.select(range(8)), prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1,
                       machine=CPU)
    assert _inside_checkpoint_mapping(result.model) == []
    # The copy is an anonymous map of its own (not malloc's heap), given back when the model goes.
    address = owned.bert.embeddings.word_embeddings.weight.data_ptr()
    (start, end, _), = [m for m in _mappings() if m[0] <= address < m[1]]
    assert end - start >= sum(p.numel() * p.element_size() for p in owned.parameters())
    del owned, loaded
    gc.collect()
    assert (start, end) not in [(a, b) for a, b, _ in _mappings()]
