"""One optimizer step's arithmetic: fused AdamW with the gradient clipping folded in, and its norm.

The HF Trainer's recipe (AdamW without weight decay, clipping at norm 1.0), with fewer passes over the
gradients: every figure cited here comes from ``bench/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


MAX_GRAD_NORM = 1.0


class GradientNorm:
    """The total gradient norm that clipping needs, reading the input embedding's gradient only where it can
    be non-zero.

    A word-embedding gradient is zero except on the rows of the batch's token ids, and it is the largest
    gradient of a small model (47 MB of all-MiniLM-L6-v2's 91 MB): on a CPU, where the norm is a pass over
    memory, reading only those rows halves its cost (``bench/grad_norm.py``). The first call checks the
    shortcut against the full norm and drops it for good where they differ (an embedding matrix that is
    also an output layer, say). On a GPU the full norm is cheap and ``unique`` would wait for the device.
    """

    def __init__(self, model: torch.nn.Module, params: list[torch.nn.Parameter]) -> None:
        import torch

        self.params = params
        get_embeddings = getattr(model, "get_input_embeddings", None)  # a transformers model's; not nn.Module's
        embedding = get_embeddings() if callable(get_embeddings) else None
        weight = getattr(embedding, "weight", None)
        usable = (isinstance(embedding, torch.nn.Embedding) and not embedding.sparse and weight is not None
                  and weight.device.type == "cpu" and any(p is weight for p in params))
        self.embedding: torch.nn.Parameter | None = weight if usable else None
        self.others = [p for p in params if p is not weight]
        self.checked = False

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """The norm of the current gradients; None on a torch without ``get_total_norm`` (< 2.6)."""
        import torch

        get_total_norm = getattr(torch.nn.utils, "get_total_norm", None)
        if get_total_norm is None:
            return None
        every = [p.grad for p in self.params if p.grad is not None]
        if self.embedding is None or self.embedding.grad is None:
            return get_total_norm(every, foreach=True)
        rows = self.embedding.grad.index_select(0, torch.unique(input_ids))
        total = get_total_norm([*(p.grad for p in self.others if p.grad is not None), rows], foreach=True)
        if not self.checked:
            full = get_total_norm(every, foreach=True)
            if not torch.isfinite(full):  # an fp16 step that overflowed (and is skipped) proves nothing
                return full
            self.checked = True
            if not torch.allclose(total, full, rtol=1e-5, atol=1e-12):
                self.embedding = None
                return full
        return total


def clip_gradients(params: list[torch.nn.Parameter], device: torch.device,
                    optimizer: torch.optim.Optimizer | None = None,
                    total: torch.Tensor | None = None) -> torch.Tensor:
    """Scale gradients down to norm ``MAX_GRAD_NORM``; return the norm before clipping (``total`` when given).

    Same result as ``clip_grad_norm_`` (the HF Trainer's), with fewer passes over the gradients. With
    torch's fused AdamW the scaling is left to the optimizer's kernel: ``grad_scale`` (the hook that
    ``GradScaler`` uses) divides every gradient by max(1, norm / max) inside the update, so clipping costs
    one read of the gradients instead of three. Otherwise: fused norms, and on a CPU no rescaling pass when
    the norm is already small enough (on a GPU it always rescales rather than wait for the norm).
    """
    import torch

    utils = torch.nn.utils
    if not hasattr(utils, "get_total_norm"):  # torch < 2.6
        return utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    if total is None:
        total = utils.get_total_norm([p.grad for p in params if p.grad is not None], foreach=True)
    if optimizer is not None and optimizer.defaults.get("fused"):
        # fused AdamW divides the gradients by grad_scale, an attribute torch's stubs do not declare
        # (in float32, as GradScaler's scale is: the fused kernel takes no other, whatever the weights' dtype)
        scale = torch.clamp((total + 1e-6) / MAX_GRAD_NORM, min=1.0).to(torch.float32)
        optimizer.grad_scale = scale  # type: ignore[attr-defined]
    elif device.type != "cpu" or total > MAX_GRAD_NORM:
        utils.clip_grads_with_norm_(params, MAX_GRAD_NORM, total, foreach=True)
    return total


def adamw(params: list[torch.nn.Parameter], lr: float, device: torch.device) -> torch.optim.Optimizer:
    """torch's AdamW with the HF defaults (no weight decay); fused kernels where this torch has them."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0, fused=True)
    except (RuntimeError, TypeError):  # no fused kernel for this device or dtype
        return torch.optim.AdamW(params, lr=lr, weight_decay=0.0)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The dtype to autocast to for ``--precision``; None for plain fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
