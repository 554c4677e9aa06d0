"""The speed features are correct: length-grouped batches still see every example once per epoch, padding
is per batch, the corpus is tokenised once per study, no checkpoint is written by a trial, evaluation keeps
input order, and the last epoch's dev evaluation reused as the final one is the same result."""

from __future__ import annotations

import gc
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import optuna_seqclf.model as model_lib
import optuna_seqclf.tuning as tuning_lib
from conftest import SST2_2K
from optuna_seqclf import DataSpec, HParams, SearchSpace, StudySpec, TrainSettings, prepare, tune
from optuna_seqclf.batches import length_grouped_batches
from optuna_seqclf.data import encode_corpus
from optuna_seqclf.model import evaluate, fine_tune


@pytest.fixture(scope="module")
def sst2(tiny_model: Path):  # type: ignore[no-untyped-def]
    settings = TrainSettings(model=str(tiny_model), epochs=1, threads=1, device="cpu")  # the CPU paths, on any machine
    prepared = prepare(DataSpec(SST2_2K), settings)
    return settings, prepared, encode_corpus(prepared.corpus, prepared.tokenizer, 64)


def test_length_grouped_batches_cover_every_example_once_with_dynamic_padding(
        sst2, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    train = encoded.train.select(range(600))
    lengths = np.asarray(train["length"])
    batches: list[dict[str, torch.Tensor]] = []
    rows_seen: list[int] = []
    real_collate = model_lib.collate

    def spy(split, rows, pad_id, multiple_of=1):  # type: ignore[no-untyped-def]
        batch = real_collate(split, rows, pad_id, multiple_of)
        if len(split) == len(train):  # training batches (evaluation batches the dev split)
            rows_seen.extend(int(r) for r in rows)
            batches.append(batch)
        return batch

    monkeypatch.setattr(model_lib, "collate", spy)
    two_epochs = replace(settings, epochs=2)
    fine_tune(settings.model, prepared.tokenizer, train, encoded.dev.select(range(50)),
              prepared.corpus.id2label, HParams(16, 1e-4), two_epochs, seed=1)
    assert len(rows_seen) == 2 * 600
    first, second = rows_seen[:600], rows_seen[600:]
    assert sorted(first) == sorted(second) == list(range(600))  # every example exactly once per epoch
    assert first != second  # a fresh shuffle each epoch
    spreads = []
    for batch in batches:
        real = batch["attention_mask"].sum(dim=1)
        assert batch["input_ids"].shape[1] == int(real.max()) <= 64  # padded to the batch's longest only
        assert all(batch["input_ids"][i, int(n):].eq(prepared.tokenizer.pad_token_id).all() for i, n in enumerate(real))
        spreads.append(int(real.max() - real.min()))
    assert int(batches[0]["attention_mask"].sum(dim=1).max()) == lengths.max()  # the longest batch first
    rng = np.random.default_rng(0)
    random_spread = np.mean([np.ptp(lengths[rng.permutation(len(lengths))[:16]]) for _ in range(200)])
    assert np.mean(spreads) < 0.5 * random_spread  # batches group similar lengths


def test_batches_are_a_permutation_for_any_size() -> None:
    lengths = np.random.default_rng(3).integers(1, 60, size=1234)
    for batch_size in (1, 7, 32, 5000):
        batches = length_grouped_batches(lengths, batch_size, np.random.default_rng(1))
        assert sorted(np.concatenate(batches).tolist()) == list(range(1234))
        assert all(len(b) <= batch_size for b in batches)


def test_corpus_is_tokenised_once_per_study_and_trials_write_no_checkpoints(
        workdir: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = tuning_lib.encode_corpus

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(tuning_lib, "encode_corpus", counting)
    scratch = workdir / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    from conftest import EXAMPLE_DATA

    spec = StudySpec(study_name="once", storage="sqlite:///studies/once.db")
    result = tune(spec, DataSpec(EXAMPLE_DATA), TrainSettings(model=str(tiny_model), epochs=2),
                  SearchSpace((8, 16), (1e-3, 1e-4)), log_dir=None)
    assert result.stats.trained == 4 and calls["n"] == 1
    assert list(scratch.iterdir()) == []  # trial scratch folders are gone, and nothing was checkpointed
    assert sorted(p.name for p in workdir.iterdir()) == ["studies", "tmp"]


def test_evaluation_keeps_input_order_and_final_eval_is_the_last_epochs(sst2) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    dev = encoded.dev.select(range(40))
    epochs: list[dict[str, float]] = []
    result = fine_tune(settings.model, prepared.tokenizer, encoded.train.select(range(200)), dev,
                       prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1,
                       on_epoch=lambda epoch, metrics: epochs.append(metrics))
    fresh = evaluate(result.model, dev, prepared.tokenizer, batch_size=7)
    assert result.dev.metrics == pytest.approx(fresh.metrics) and result.dev.metrics == pytest.approx(epochs[-1])
    result.model.eval()
    with torch.inference_mode():
        one_by_one = [int(result.model(input_ids=torch.tensor([row["input_ids"]])).logits.argmax())
                      for row in dev]
    assert fresh.predictions.tolist() == one_by_one


@pytest.mark.parametrize("scale", [0.001, 5.0])  # below and above the clipping norm
def test_cheaper_gradient_clipping_matches_torch(scale: float) -> None:
    from optuna_seqclf.model import MAX_GRAD_NORM, _clip_gradients

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(50, 40)) for _ in range(3)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(theirs, MAX_GRAD_NORM)
    assert float(_clip_gradients(ours, torch.device("cpu"))) == pytest.approx(float(expected))
    assert all(torch.allclose(a.grad, b.grad) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("scale", [0.001, 5.0])  # below and above the clipping norm
def test_clipping_inside_fused_adamw_matches_clip_grad_norm(scale: float) -> None:
    """The fused optimizer's grad_scale does the clipping: same parameters as clip_grad_norm_ + AdamW."""
    from optuna_seqclf.model import MAX_GRAD_NORM, _adamw, _clip_gradients

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    start = [torch.randn(50, 40) for _ in range(3)]
    ours, theirs, unclipped = ([torch.nn.Parameter(t.clone()) for t in start] for _ in range(3))
    ours_opt = _adamw(ours, 1e-2, cpu)
    assert ours_opt.defaults.get("fused")  # the path under test: this torch has the fused CPU kernel
    theirs_opt = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.0)
    unclipped_opt = torch.optim.AdamW(unclipped, lr=1e-2, weight_decay=0.0)
    for step in range(6):
        grads = [torch.randn_like(t) * scale * (1 + 3 * (step % 2)) for t in start]  # norms vary step to step
        for params in (ours, theirs, unclipped):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        norm = _clip_gradients(ours, cpu, ours_opt)
        assert float(norm) == pytest.approx(float(torch.nn.utils.clip_grad_norm_(theirs, MAX_GRAD_NORM)))
        for opt in (ours_opt, theirs_opt, unclipped_opt):
            opt.step()
            opt.zero_grad(set_to_none=True)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))
    differs = not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(unclipped, theirs))
    assert differs == (scale > 1)  # clipping changed the result only where the norm was above 1


def test_fp16_loss_scaling_keeps_the_fused_clipping_and_skips_overflowed_steps() -> None:
    """Under a GradScaler (fp16) the clipping inside fused AdamW gives clip_grad_norm_ + AdamW on the real
    gradients, and a step whose gradients overflowed changes nothing."""
    from optuna_seqclf.model import MAX_GRAD_NORM, _adamw, _clip_gradients

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    start = [torch.randn(30, 20) for _ in range(3)]
    ours, theirs = ([torch.nn.Parameter(t.clone()) for t in start] for _ in range(2))
    ours_opt, theirs_opt = _adamw(ours, 1e-2, cpu), torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(6):
        grads = [torch.randn_like(t) * (0.01 if step % 2 else 3.0) for t in start]
        overflow = step == 3
        scaler.scale(sum((p * g).sum() for p, g in zip(ours, grads))).backward()  # gradients: g * scale
        if overflow:
            ours[0].grad[0, 0] = float("inf")
        before = [p.detach().clone() for p in ours]
        scaler.unscale_(ours_opt)
        _clip_gradients(ours, cpu, ours_opt)
        scaler.step(ours_opt)
        scaler.update()
        ours_opt.zero_grad(set_to_none=True)
        if overflow:
            assert all(torch.equal(a, b) for a, b in zip(ours, before))
            continue
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_norm_(theirs, MAX_GRAD_NORM)
        theirs_opt.step()
        theirs_opt.zero_grad(set_to_none=True)
    assert scaler.get_scale() < 1024.0  # the overflow halved the scale
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, theirs))


def test_gradient_norm_reads_only_the_batchs_embedding_rows(sst2) -> None:  # type: ignore[no-untyped-def]
    """The clipping norm from the embedding rows of the batch's tokens equals the full norm, and rows
    outside the batch are not read once the first step has checked the shortcut."""
    from optuna_seqclf.batches import TensorSplit, collate
    from optuna_seqclf.model import GradientNorm

    settings, prepared, encoded = sst2
    torch.manual_seed(0)
    model = model_lib.own_weights(model_lib.load_model(settings.model, prepared.corpus.id2label))
    params = [p for p in model.parameters() if p.requires_grad]
    norm_of = GradientNorm(model, params)
    split = TensorSplit.from_dataset(encoded.train)
    for rows in (np.arange(16), np.arange(16, 40)):
        batch = collate(split, rows, prepared.tokenizer.pad_token_id)
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        full = torch.nn.utils.get_total_norm([p.grad for p in params])
        assert float(norm_of(batch["input_ids"])) == pytest.approx(float(full), rel=1e-6)
    assert norm_of.embedding is model.get_input_embeddings().weight  # the shortcut survived its check
    unused = sorted(set(range(len(prepared.tokenizer))) - set(batch["input_ids"].flatten().tolist()))[0]
    norm_of.embedding.grad[unused] = 1e3  # not a row of this batch: not read
    assert float(norm_of(batch["input_ids"])) == pytest.approx(float(full), rel=1e-6)


def test_gradient_norm_reads_every_row_when_the_embedding_is_also_an_output_layer() -> None:
    from transformers import BertConfig, BertForMaskedLM

    from optuna_seqclf.model import GradientNorm

    torch.manual_seed(0)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, tie_word_embeddings=True)
    model = BertForMaskedLM(config)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    params = [p for p in model.parameters() if p.requires_grad]
    input_ids = torch.randint(5, 20, (4, 9))
    model(input_ids=input_ids, labels=input_ids).loss.backward()  # the decoder gives every row a gradient
    norm_of = GradientNorm(model, params)
    full = torch.nn.utils.get_total_norm([p.grad for p in params])
    assert float(norm_of(input_ids)) == pytest.approx(float(full), rel=1e-6)
    assert norm_of.embedding is None  # checked, found wrong for this model, dropped


def test_tensor_split_reads_arrow_in_place_and_collates_the_right_rows(sst2) -> None:  # type: ignore[no-untyped-def]
    from optuna_seqclf.batches import TensorSplit, collate

    _, prepared, encoded = sst2
    split = TensorSplit.from_dataset(encoded.train)
    assert not split.columns["input_ids"].flags.owndata  # a view of the dataset's Arrow buffer, not a copy
    shuffled = encoded.train.shuffle(seed=3).select(range(300))  # an indices mapping: rows out of order
    for dataset in (encoded.train, shuffled):
        split = TensorSplit.from_dataset(dataset)
        rows = [5, 0, 299, 17]
        batch = collate(split, rows, prepared.tokenizer.pad_token_id, multiple_of=8)
        assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].dtype == torch.long
        for r, i in enumerate(rows):
            ids = dataset[i]["input_ids"]
            assert batch["input_ids"][r, : len(ids)].tolist() == ids
            assert batch["input_ids"][r, len(ids):].eq(prepared.tokenizer.pad_token_id).all()
            width = batch["input_ids"].shape[1]
            assert batch["attention_mask"][r].tolist() == [1] * len(ids) + [0] * (width - len(ids))
            assert int(batch["labels"][r]) == dataset[i]["labels"]


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
                       encoded.dev.select(range(8)), prepared.corpus.id2label, HParams(16, 1e-3), settings, seed=1)
    assert _inside_checkpoint_mapping(result.model) == []
    # The copy is an anonymous map of its own (not malloc's heap), given back when the model goes.
    address = owned.bert.embeddings.word_embeddings.weight.data_ptr()
    (start, end, _), = [m for m in _mappings() if m[0] <= address < m[1]]
    assert end - start >= sum(p.numel() * p.element_size() for p in owned.parameters())
    del owned, loaded
    gc.collect()
    assert (start, end) not in [(a, b) for a, b, _ in _mappings()]


KEEP_OR_RETURN = """
import sys
import numpy as np
from optuna_seqclf.model import keep_freed_memory
def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
block = np.ones(100 * 2**20 // 8)  # 100 MB: above glibc's largest default mmap threshold (32 MB)
before = rss_mb()
del block
print(kept, round(before - rss_mb()))
"""


def test_freed_training_buffers_stay_in_the_heap_for_the_next_step() -> None:
    """With glibc's defaults a freed 100 MB block goes back to the OS (to be page-faulted in again on the
    next step); after ``keep_freed_memory`` it stays in the process for the next allocation."""
    import platform
    import subprocess
    import sys

    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    released = {}
    for variant in ("defaults", "keep"):
        proc = subprocess.run([sys.executable, "-c", KEEP_OR_RETURN, variant], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        applied, mb = proc.stdout.split()
        assert applied == str(variant == "keep")
        released[variant] = int(mb)
    assert released["defaults"] >= 90  # unmapped at once
    assert released["keep"] <= 10  # kept for reuse


@pytest.mark.parametrize(("precision", "dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16),
                                                  ("fp16", torch.float16)])
def test_precision_sets_the_dtype_layers_compute_in_and_fp16_scales_the_loss(
        sst2, precision: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    settings, prepared, encoded = sst2
    seen: set[torch.dtype] = set()
    scaled: list[float] = []
    initial: list[torch.Tensor] = []
    real_load, real_scaler = model_lib.load_model, torch.amp.GradScaler

    def load_and_watch(*args, **kwargs):  # type: ignore[no-untyped-def]
        model = real_load(*args, **kwargs)
        initial.append(model.bert.encoder.layer[0].attention.self.query.weight.detach().clone())
        model.bert.encoder.layer[0].attention.self.query.register_forward_hook(
            lambda module, inputs, output: seen.add(output.dtype))
        return model

    class WatchedScaler(real_scaler):  # type: ignore[misc, valid-type]
        def scale(self, outputs):  # type: ignore[no-untyped-def]
            scaled.append(float(self.get_scale()))
            return super().scale(outputs)

    monkeypatch.setattr(model_lib, "load_model", load_and_watch)
    monkeypatch.setattr(torch.amp, "GradScaler", WatchedScaler)
    train, dev = encoded.train.select(range(160)), encoded.dev.select(range(40))
    result = fine_tune(settings.model, prepared.tokenizer, train, dev, prepared.corpus.id2label, HParams(16, 1e-3),
                       replace(settings, epochs=2, precision=precision), seed=1)
    assert seen == {dtype}  # training and evaluation forward passes alike
    assert (len(scaled) == 20) == (precision == "fp16")  # fp16 alone scales the loss, on every step
    assert np.isfinite(result.train_metrics["train_loss"]) and np.isfinite(result.log_history[-1]["loss"])
    trained = result.model.bert.encoder.layer[0].attention.self.query.weight
    assert trained.dtype == torch.float32 and torch.isfinite(trained).all()  # the weights stay fp32
    assert not torch.equal(trained, initial[0])  # steps were taken (fp16 skips only the ones that overflow)


def test_precision_is_fp32_unless_asked_and_a_bad_one_is_refused() -> None:
    from optuna_seqclf.errors import ConfigError

    assert TrainSettings(model="m").precision == "fp32"
    assert model_lib.autocast_dtype("fp32") is None
    assert model_lib.autocast_dtype("bf16") == torch.bfloat16
    with pytest.raises(ConfigError, match="--precision 'fp8'"):
        TrainSettings(model="m", precision="fp8")
