"""The training recipe, pinned: our loop's steps give the weights of a plain PyTorch loop with the HF Trainer's
recipe (AdamW without weight decay, ``clip_grad_norm_`` at 1.0, linear decay to 0 without warm-up), so a speed
trick (fused AdamW with the clipping folded in, the gradient norm read on the batch's embedding rows only)
cannot change the maths unseen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoConfig

from conftest import CPU, write_split
from optuna_seqclf import HParams, TrainSettings, prepare
from optuna_seqclf.data.batches import TensorSplit, collate
from optuna_seqclf.settings import DataSpec
from optuna_seqclf.training.loop import fine_tune
from optuna_seqclf.training.model import load_model

STEPS, LR = 3, 5e-2


@pytest.fixture(scope="module")
def no_dropout(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT without dropout: a step is then a function of the weights and the batch alone."""
    import shutil

    folder = tmp_path_factory.mktemp("no-dropout")
    shutil.copytree(tiny_model, folder, dirs_exist_ok=True)
    config = AutoConfig.from_pretrained(folder)
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    config.save_pretrained(folder)
    return folder


def reference_steps(model_name: str, id2label: dict[int, str], batch: dict[str, torch.Tensor],
                    seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], list[float]]:
    """``STEPS`` steps on ``batch`` the way the HF Trainer takes them, written with plain PyTorch."""
    from transformers import get_linear_schedule_with_warmup, set_seed

    set_seed(seed)
    model = in_float64(model_name, id2label)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, foreach=False, fused=False)
    schedule = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=STEPS)
    norms, initial = [], {name: p.detach().clone() for name, p in model.named_parameters()}
    for _ in range(STEPS):
        model(**batch).loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(params, 1.0)))
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    return initial, {name: p.detach().clone() for name, p in model.named_parameters()}, norms


def in_float64(name: str, id2label: dict[int, str], task: str = "single-label") -> torch.nn.Module:
    """The model in double precision: rounding then cannot hide a difference in the maths (in fp32, Adam turns
    the rounding noise of gradients that are zero in exact arithmetic, like a key bias's, into visible steps)."""
    return load_model(name, id2label, task).double()


@pytest.mark.parametrize("rows", ["sparse", "dense"])
def test_our_steps_give_the_plain_pytorch_weights(no_dropout: Path, tmp_path: Path, rows: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``sparse``: a batch of a few words, so the gradient norm reads 10 or so of the embedding's rows;
    ``dense``: a batch that uses every word of the vocabulary, so every row has a gradient."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(no_dropout)
    words = [w for w in tokenizer.get_vocab() if w.isalpha()]
    if rows == "sparse":
        texts = ["great movie", "awful plot", "great plot", "awful movie"]
    else:  # every word once, over 8 sentences
        texts = [" ".join(words[i::8]) for i in range(8)]
    data = tmp_path / "data"
    body = "".join(f"{text}\t{i % 2}\n" for i, text in enumerate(texts))
    for name in ("train", "dev", "test"):
        write_split(data, name, "sentence\tLabel\n" + body)
    # one batch per epoch, STEPS epochs: STEPS steps on the same batch, the learning rate decaying linearly
    settings = TrainSettings(model=str(no_dropout), epochs=STEPS, max_seq_length=512)
    prepared = prepare(DataSpec(data), settings, CPU)
    encoded = prepared.encoded(settings.max_seq_length)
    monkeypatch.setattr("optuna_seqclf.training.loop.load_model", in_float64)
    result = fine_tune(settings.model, prepared.tokenizer, encoded.train, encoded.dev, prepared.corpus.id2label,
                       HParams(len(texts), LR), settings, seed=3, machine=CPU)
    split = TensorSplit.from_dataset(encoded.train)
    batch = collate(split, np.arange(len(split)), tokenizer.pad_token_id)
    initial, want, norms = reference_steps(settings.model, prepared.corpus.id2label, batch, seed=3)
    got = dict(result.model.named_parameters())
    assert set(got) == set(want)
    assert max(norms) > 1.0  # clipping did scale the gradients: it is part of what is compared
    touched = int(torch.unique(batch["input_ids"]).numel())
    assert (touched < 20) if rows == "sparse" else (touched >= len(words))
    for name, weight in want.items():
        torch.testing.assert_close(got[name].detach(), weight, rtol=1e-7, atol=1e-8, msg=name)
    # every layer moved (but the key biases, whose gradient is 0: softmax ignores a shift of all its scores), so
    # the comparison is of trained weights, not of the checkpoint's twice
    assert all((want[name] - initial[name]).abs().max() > 1e-4 for name in want if not name.endswith("key.bias"))
