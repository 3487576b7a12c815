"""Dynamic Logit Fusion (Fan et al., NeurIPS 2024; PAPERS.md section 4).

``fuse(large, base=small, experts=[...])`` is used as a statement's model
(``"…[A]" from fuse("smollm2", base="tiny", experts=["expert"])``). Every step, the large
model's logits are shifted by a weighted expert-minus-base difference,
``z = z_L + alpha * (z_t - z_S)``, with the expert ``t`` and ``alpha`` chosen per step and
row by the paper's KL matching: the fused distribution should move away from the large
model by the same two-directional KL distance the experts moved away from their base. The
search is the paper's: a grid over ``alpha`` in [0, 2] step 0.1, one expert at a time.
Constraint masks apply after fusion; ``alpha`` is chosen on the unmasked distributions.
All models advance in the same forward pass per model as the main rows, and the chosen
weights appear in the result's trace. Models must share one vocabulary (checked when the
hole starts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmq.errors import LmqLimitError
from lmq.runtime.decoding.model_choices import Ensemble
from lmq.stdlib import arguments

__all__ = ["fuse"]


def fuse(large: Any, base: Any, experts: Sequence[Any], alpha: Any = "dlf",
         grid: Sequence[float] = (0.0, 2.0, 0.1)) -> Ensemble:
    """An ensemble decoding with Dynamic Logit Fusion (``alpha="dlf"``) or with a fixed
    ``alpha`` (proxy tuning with ``alpha=1.0``). Each model is a model spec, or a
    ``(model, prefix)`` pair whose prefix only that model sees (prompt-as-expert). Each
    step weighs every (expert, alpha) pair as a logits row of the vocabulary's size: at
    most ``limits.rows`` of them."""
    name = "fuse"
    large, base = _model(large, "large"), _model(base, "base")
    experts = [_model(expert, "experts[...]")
               for expert in arguments.sequence(experts, "experts", name)]
    if not experts:
        raise arguments.ArgumentError("fuse() needs at least one expert")
    if type(alpha) is str and alpha == "dlf":
        grid = arguments.sequence(grid, "grid", name)
        if len(grid) != 3:
            raise arguments.ArgumentError("fuse(): 'grid' is (low, high, step)")
        low, high, step = (arguments.number(x, "grid[...]", name) for x in grid)
        if not step > 0 or not high >= low:
            raise arguments.ArgumentError("fuse(): 'grid' needs low <= high and step > 0")
        count = round(min((high - low) / step, 1e9)) + 1
        _check_rows(count * len(experts))
        alphas = [round(low + i * step, 10) for i in range(count)]
    else:
        alphas = [arguments.number(alpha, "alpha", name)]
        _check_rows(len(experts))
    return Ensemble(large, (base, *experts), DlfCombiner(len(experts), alphas))


def _model(value: Any, name: str) -> Any:
    """A model, or a (model, prefix) pair."""
    if issubclass(type(value), tuple) and len(value) == 2:
        return arguments.model(value[0], "fuse"), arguments.text(value[1], name, "fuse")
    return arguments.model(value, "fuse")


def _check_rows(rows: int) -> None:
    most = arguments.limits().rows
    if rows > most:
        raise LmqLimitError(f"fuse() would weigh {rows:,} (expert, alpha) pairs per step; the "
                            f"limit is {most:,} (limits.rows)")


class DlfCombiner:
    """``combine(z_large, [z_base, z_1, ..., z_T]) -> (fused logits, decision)``."""

    def __init__(self, n_experts: int, alphas: Sequence[float]) -> None:
        self.n_experts = n_experts
        self.alphas = sorted(alphas, key=abs)  # ties go to the smaller |alpha|

    def __call__(self, large, others):
        import torch

        base, experts = others[0], torch.stack(list(others[1:]))  # [T, V]
        log_p = torch.log_softmax(large, -1)
        log_q = torch.log_softmax(base, -1)
        log_qt = torch.log_softmax(experts, -1)
        q, qt, p = log_q.exp(), log_qt.exp(), log_p.exp()
        to_base = (qt * (log_qt - log_q)).sum(-1)  # KL(Q_t || Q), [T]
        from_base = (q * (log_q - log_qt)).sum(-1)  # KL(Q || Q_t), [T]
        alphas = torch.tensor(self.alphas, dtype=large.dtype, device=large.device)
        deltas = experts - base  # [T, V]
        # candidates: every (expert, alpha), the other experts at 0 -> [T, A, V]
        fused = large + alphas[None, :, None] * deltas[:, None, :]
        log_f = torch.log_softmax(fused, -1)
        kl_fp = (log_f.exp() * (log_f - log_p)).sum(-1)  # KL(P~ || P), [T, A]
        kl_pf = (p * (log_p - log_f)).sum(-1)  # KL(P || P~), [T, A]
        loss = ((kl_fp[..., None] - to_base) ** 2 + (kl_pf[..., None] - from_base) ** 2).sum(-1)
        flat = int(torch.argmin(loss.T.reshape(-1)))  # alpha-major: smaller |alpha| first
        a, t = divmod(flat, loss.shape[0])
        return fused[t, a], {"expert": t, "alpha": self.alphas[a]}
