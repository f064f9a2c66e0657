"""The ToMe baseline: token merging by bipartite soft matching in every block.

The method is Token Merging (ToMe) by Bolya, Fu, Dai, Zhang, Feichtenhofer and Hoffman,
"Token Merging: Your ViT But Faster", ICLR 2023 (section 3). This module is our own
implementation of the procedure the paper describes; in each block, between attention
and the MLP:

1. the tokens are dealt alternately into two sides, A (positions 0, 2, 4, ...) and
   B (positions 1, 3, 5, ...);
2. each token is described by its attention keys averaged over the heads, and every
   A token is compared with every B token by cosine similarity;
3. each A token keeps only its most similar B token (its *partner*);
4. the ``r`` A tokens with the most similar partners leave, each folded into its partner
   by a size-weighted average (a B token may absorb several A tokens);
5. sizes (patches per token) are carried to the next blocks, where proportional
   attention (``log(size)`` added to the attention logits, see
   :mod:`tomato.core.attention`) lets a merged token weigh as much as its patches did.

So every block leaves at most ``r`` fewer tokens; ``r`` is capped at half of the
mergeable tokens, ``(T - P) // 2``. The ``P`` prefix tokens (class, and distillation)
never take part: they are neither matched nor absorbed.

**Output order**, chosen so that timm's heads still find the class token at 0 and the
distillation token at 1: the prefix tokens, then the A tokens that stayed, then the
B tokens, each group in its input order. This is also the order the authors' release
produces, so the two give the same tokens in the same places.

**Ties.** Two candidate edges can tie exactly (equal cosine similarity in float). Here
an A token whose best similarity is shared by several B tokens takes the first of them
(lowest position), and among A tokens whose best similarities are equal the one at the
lower position leaves first (a stable sort). The authors' release uses an unstable sort
for the second choice, so on an exact tie at the ``r``-th edge the two may pick different
tokens; everywhere else they make the same merges. (A key of zero length, which trained
models do not produce, has cosine similarity 0 with everything here, and NaN there.)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = ["Matching", "match", "merge", "track_source", "per_block_r"]

#: What ToMe users pass as ``r``: one count for every block, a count per block, or a
#: ``(r, inflection)`` schedule.
RSpec = Union[int, Sequence[int], Tuple[int, float]]

_R_FORMS = (
    "an int >= 0 (tokens merged in every block), a list of ints >= 0 (one per block, "
    "padded with 0 when short), or an (r, inflection) tuple with inflection in [-1, 1]"
)


@dataclass(frozen=True)
class Matching:
    """Where each token of one block goes.

    slot: (B, T) long, the output position of every input token; a token that leaves
    shares the slot of its partner. out_tokens: T_out, the number of distinct slots.
    """

    slot: torch.Tensor
    out_tokens: int


def _output_order(num_tokens: int, num_prefix_tokens: int, device: torch.device) -> torch.Tensor:
    """(T,) input positions in output order: prefix, then side A, then side B."""
    pos = torch.arange(num_tokens, device=device)
    rest = pos[num_prefix_tokens:]
    return torch.cat([pos[:num_prefix_tokens], rest[rest % 2 == 0], rest[rest % 2 == 1]])


@torch.no_grad()
def match(
    keys: torch.Tensor, r: int, num_prefix_tokens: int = 1, size: torch.Tensor | None = None
) -> Matching:
    """Pick the ``r`` merges of one block by bipartite soft matching.

    keys: (B, T, c) attention keys averaged over heads; the first ``num_prefix_tokens``
    tokens (class, distillation) are protected. Returns a :class:`Matching` that sends
    the (B, T) tokens to ``T - r`` slots (``r`` capped at ``(T - P) // 2``).
    size: optional (B, T, 1) token sizes; a size-0 token (ToMato's padding, when ToMe
    runs after ToMato) is never a partner, and each image merges ``min(r, (real - P) // 2)``
    of its real tokens (its own cap), the rest of the ``r`` being pads folded into the class
    token with weight 0: each image's real tokens merge as they would in a batch of one.
    """
    b, t, _ = keys.shape
    p = num_prefix_tokens
    device = keys.device
    wanted = int(r)
    r = min(wanted, (t - p) // 2)
    if r <= 0:
        return Matching(torch.arange(t, device=device).expand(b, t), t)

    unit = F.normalize(keys, dim=-1)
    cosine = unit[:, 0::2] @ unit[:, 1::2].transpose(1, 2)  # (B, |A|, |B|)
    a_pos = torch.arange(0, t, 2, device=device)
    b_pos = torch.arange(1, t, 2, device=device)
    protected = (a_pos < p)[:, None] | (b_pos < p)[None, :]
    cosine = cosine.masked_fill(protected, -math.inf)
    order = _output_order(t, p, device).expand(b, t)
    if size is not None:
        # Below any cosine (-1) but above the protected tokens (-inf): a pad is nobody's
        # partner, and leaves (into a real token, with weight 0) only after every real one.
        pad = size[..., 0] <= 0  # (B, T)
        free = cosine > -math.inf
        cosine = cosine.masked_fill((pad[:, 0::2, None] | pad[:, None, 1::2]) & free, -2.0)
        # Pads go last in the output, so the real tokens keep the positions (and next
        # block's A/B sides) they would have in a batch of one.
        rank = torch.empty_like(order[0]).scatter_(0, order[0], torch.arange(t, device=device))
        order = (rank + pad.long() * t).argsort(dim=1)

    # Each A token's best partner (first maximum on ties), then the r strongest edges
    # (stable order on ties, so the lower A position wins).
    strength, partner = cosine.max(dim=-1)  # (B, |A|)
    leaving = strength.sort(dim=-1, descending=True, stable=True).indices[:, :r]
    leaving_pos = a_pos[leaving]  # (B, r) input positions of the tokens that leave
    partner_pos = b_pos[partner.gather(1, leaving)]  # (B, r) where each one goes
    if size is not None:
        # The cap of a batch of one counts that image's own tokens, not the batch's padding:
        # image i merges r_i = min(r, (real - P) // 2) real tokens, and the rest of the
        # batch's r slots are pads folded (with weight 0, so exactly nothing) into the class token.
        real = (~pad).sum(dim=1)  # (B,) prefix included
        r_img = ((real - p) // 2).clamp(max=wanted).unsqueeze(1)  # (B, 1)
        rank = torch.arange(r, device=device).unsqueeze(0)  # (1, r)
        pads_last_first = (pad.long() * (torch.arange(t, device=device) + 1)).argsort(dim=1, descending=True)
        pad_pos = pads_last_first.gather(1, (rank - r_img).clamp(min=0).expand(b, r))
        real_one = rank < r_img
        leaving_pos = torch.where(real_one, leaving_pos, pad_pos)
        partner_pos = torch.where(real_one, partner_pos, torch.zeros_like(partner_pos))

    gone = torch.zeros(b, t, dtype=torch.bool, device=device)
    gone.scatter_(1, leaving_pos, True)
    # Survivors are numbered in output order; the leavers then borrow their partner's slot.
    numbered = (~gone.gather(1, order)).long().cumsum(dim=1) - 1
    slot = torch.empty(b, t, dtype=torch.long, device=device).scatter_(1, order, numbered)
    slot.scatter_(1, leaving_pos, slot.gather(1, partner_pos))
    return Matching(slot, t - r)


def merge(
    m: Matching, x: torch.Tensor, size: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average of the tokens sharing a slot.

    x: (B, T, C), size: (B, T, 1) patches per token (ones when None)
    -> x: (B, T_out, C), size: (B, T_out, 1). The size-weighted sum is preserved.
    """
    b, t, c = x.shape
    if size is None:
        size = x.new_ones(b, t, 1)
    # Accumulate in at least float32: a token may end up holding many patches.
    acc = torch.promote_types(x.dtype, torch.float32)
    w = size.to(acc)
    idx = m.slot.unsqueeze(-1)
    total = x.new_zeros(b, m.out_tokens, c, dtype=acc).scatter_add_(1, idx.expand(b, t, c), x.to(acc) * w)
    new_size = x.new_zeros(b, m.out_tokens, 1, dtype=acc).scatter_add_(1, idx, w)
    # A slot of padding alone has size 0: it stays a zero token rather than 0 / 0.
    return (total / new_size.clamp_min(torch.finfo(acc).tiny)).to(x.dtype), new_size.to(size.dtype)


def track_source(
    m: Matching, source: torch.Tensor | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Which input tokens of the first block each token now stands for.

    source: (B, T, T_in) 0/1 map before this block (the identity when None)
    -> (B, T_out, T_in), ``[b, o, i] = 1`` when output token o holds input token i.
    """
    b, t = m.slot.shape
    if source is None:
        source = torch.eye(t, dtype=dtype, device=m.slot.device).expand(b, t, t)
    t_in = source.shape[-1]
    out = source.new_zeros(b, m.out_tokens, t_in)
    # Each input token lands in exactly one slot, so a sum of 0/1 rows stays 0/1.
    return out.scatter_add_(1, m.slot.unsqueeze(-1).expand(b, t, t_in), source)


def _count(value: object) -> int | None:
    """``value`` as an int >= 0, or None when it is not one (bools are not counts)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        return None
    return int(value)


def per_block_r(r: RSpec, depth: int) -> list[int]:
    """Tokens to merge in each of ``depth`` blocks, from any form ToMe accepts.

    - ``int``: the same ``r`` in every block;
    - ``list`` of ints: one per block, padded with zeros when shorter than ``depth``;
    - ``(r, inflection)`` tuple: a straight ramp whose first value is
      ``int(r * (1 - inflection))`` and whose last is ``2 r`` minus that, each value
      rounded down; so ``(r, 0)`` is constant, ``(r, -1)`` decreases from ``2 r`` to 0
      (the paper's "decreasing schedule"), ``(r, 1)`` increases from 0 to ``2 r``, and
      the total stays about ``r * depth``.

    Raises ValueError, naming what is allowed, for anything else.
    """
    bad = ValueError(f"r = {r!r} is not allowed: r must be {_R_FORMS}")
    if isinstance(r, tuple):
        if len(r) != 2:
            raise bad
        base, inflection = _count(r[0]), r[1]
        if (base is None or isinstance(inflection, bool) or not isinstance(inflection, numbers.Real)
                or not -1.0 <= float(inflection) <= 1.0):
            raise bad
        if depth == 1:
            return [base]
        first = int(base * (1.0 - float(inflection)))
        step = (2 * base - 2 * first) / (depth - 1)
        # int() truncates towards zero, so a ramp ending at 0 never dips to -1.
        return [int(first + step * i) for i in range(depth)]
    if isinstance(r, Sequence) and not isinstance(r, (str, bytes)):
        counts = [_count(v) for v in r]
        if any(v is None for v in counts):
            raise bad
        if len(counts) > depth:
            raise ValueError(f"r = {r!r} is not allowed: it lists {len(counts)} blocks but the "
                             f"model has {depth}; give at most {depth} values")
        return [int(v) for v in counts] + [0] * (depth - len(counts))  # type: ignore[arg-type]
    count = _count(r)
    if count is None:
        raise bad
    return [count] * depth
