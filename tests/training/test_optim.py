"""The clipping folded into fused AdamW, and the gradient norm that reads only the batch's embedding rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import optuna_seqclf.training.model as model_lib


@pytest.mark.parametrize("scale", [0.001, 5.0])  # below and above the clipping norm
def test_cheaper_gradient_clipping_matches_torch(scale: float) -> None:
    from optuna_seqclf.training.optim import MAX_GRAD_NORM, clip_gradients

    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(50, 40)) for _ in range(3)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn_like(a) * scale
        b.grad = a.grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(theirs, MAX_GRAD_NORM)
    assert float(clip_gradients(ours, torch.device("cpu"))) == pytest.approx(float(expected))
    assert all(torch.allclose(a.grad, b.grad) for a, b in zip(ours, theirs))


@pytest.mark.parametrize("scale", [0.001, 5.0])  # below and above the clipping norm
def test_clipping_inside_fused_adamw_matches_clip_grad_norm(scale: float) -> None:
    """The fused optimizer's grad_scale does the clipping: same parameters as clip_grad_norm_ + AdamW."""
    from optuna_seqclf.training.optim import MAX_GRAD_NORM, adamw, clip_gradients

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    start = [torch.randn(50, 40) for _ in range(3)]
    ours, theirs, unclipped = ([torch.nn.Parameter(t.clone()) for t in start] for _ in range(3))
    ours_opt = adamw(ours, 1e-2, cpu)
    assert ours_opt.defaults.get("fused")  # the path under test: this torch has the fused CPU kernel
    theirs_opt = torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.0)
    unclipped_opt = torch.optim.AdamW(unclipped, lr=1e-2, weight_decay=0.0)
    for step in range(6):
        grads = [torch.randn_like(t) * scale * (1 + 3 * (step % 2)) for t in start]  # norms vary step to step
        for params in (ours, theirs, unclipped):
            for p, g in zip(params, grads):
                p.grad = g.clone()
        norm = clip_gradients(ours, cpu, ours_opt)
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
    from optuna_seqclf.training.optim import MAX_GRAD_NORM, adamw, clip_gradients

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    start = [torch.randn(30, 20) for _ in range(3)]
    ours, theirs = ([torch.nn.Parameter(t.clone()) for t in start] for _ in range(2))
    ours_opt, theirs_opt = adamw(ours, 1e-2, cpu), torch.optim.AdamW(theirs, lr=1e-2, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    for step in range(6):
        grads = [torch.randn_like(t) * (0.01 if step % 2 else 3.0) for t in start]
        overflow = step == 3
        scaler.scale(sum((p * g).sum() for p, g in zip(ours, grads))).backward()  # gradients: g * scale
        if overflow:
            ours[0].grad[0, 0] = float("inf")
        before = [p.detach().clone() for p in ours]
        scaler.unscale_(ours_opt)
        clip_gradients(ours, cpu, ours_opt)
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
    from optuna_seqclf.data.batches import TensorSplit, collate
    from optuna_seqclf.training.optim import GradientNorm

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

    from optuna_seqclf.training.optim import GradientNorm

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
