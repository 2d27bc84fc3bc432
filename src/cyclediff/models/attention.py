"""Cross-attention control for text-conditioned UNets (Prompt-to-Prompt, Hertz et al. 2022), on the cycle's one
batched source / target call.

While a control is active, the UNet's attention layers compute their attention maps explicitly and the target
branch's conditional rows take the source branch's maps: cross-attention maps for the first ``cross_steps`` of
the grid (word swap: all tokens; refinement: the target tokens that align with source tokens, new words keep
their own), self-attention maps for the first ``self_steps``; ``weights`` scales the target's attention to
chosen words at every step. The unconditional (classifier-free) rows are left alone. Values stay the target's.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import CycleDiffError
from ..options import ATTENTION_MODES as MODES  # noqa: F401 - re-exported
from ..options import AttentionEdit


def token_map(source: list[int], target: list[int], length: int) -> list[int]:
    """For each of the target's ``length`` token positions, the source position whose map it takes, or −1 (a new
    word: keeps its own map). Aligned by the longest matching blocks of the two token lists (ids without padding,
    start and end tokens included); the padding after the end token aligns with the source's padding."""
    mapping = [-1] * length
    for block in difflib.SequenceMatcher(a=source, b=target, autojunk=False).get_matching_blocks():
        for i in range(block.size):
            if block.b + i < length:
                mapping[block.b + i] = block.a + i
    for i in range(len(target), length):  # padding: one to one after the two end tokens
        j = len(source) + (i - len(target))
        mapping[i] = j if j < length else -1
    return mapping


class AttentionControl:
    """The state the attention processors read: which rows are source / target, which step, what to do."""

    def __init__(self, edit: AttentionEdit, timesteps: list[int], maps: list[list[int]],
                 weights: list[torch.Tensor | None], *, trace: bool = False) -> None:
        self.edit, self.timesteps = edit, list(timesteps)
        self.maps = torch.tensor(maps)  # (target prompts, tokens)
        self.weights = weights
        self.rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.step = 0
        self.trace: list[dict[str, Any]] | None = [] if trace else None

    def route(self, plan: list[tuple[int, float, int]], t: int) -> None:
        """Rows of one batched call: ``plan`` is (parts, guidance scale, rows) per branch, source then target
        (each branch's rows are unconditional first when it has both)."""
        self.rows = None
        if len(plan) != 2 or t not in self.timesteps:
            return
        starts, offset = [], 0
        for parts, _, n in plan:
            starts.append(offset + (n if parts == 2 else 0))
            offset += parts * n
        (_, w_source, n_source), (_, w_target, n_target) = plan
        if w_source == 0 or w_target == 0 or n_target % n_source:
            return
        copies = n_target // n_source
        target = torch.arange(n_target) + starts[1]
        source = torch.arange(n_target) // copies + starts[0]
        prompt = torch.arange(n_target) if self.maps.shape[0] == n_target else torch.zeros(n_target, dtype=torch.long)
        self.rows, self.step = (target, source, prompt), self.timesteps.index(t)

    def __call__(self, probs: torch.Tensor, heads: int, is_cross: bool, layer: str) -> torch.Tensor:
        """The attention probabilities (rows·heads, queries, keys) with the target rows edited."""
        if self.rows is None:
            return probs
        n = len(self.timesteps)
        swap = self.step < round((self.edit.cross_steps if is_cross else self.edit.self_steps) * n)
        scale = is_cross and any(w is not None for w in self.weights)
        if not swap and not scale:
            return probs
        target, source, prompt = self.rows
        p = probs.view(-1, heads, *probs.shape[1:])
        dev = p.device
        mine, theirs = p[target.to(dev)], p[source.to(dev)]
        new = mine
        if swap and (not is_cross or self.edit.mode == "replace"):
            new = theirs
        elif swap:  # refine: aligned tokens take the source's map, new words keep their own
            index = self.maps.to(dev)[prompt.to(dev)][:, None, None, :].expand(-1, heads, p.shape[2], -1)
            taken = theirs.gather(-1, index.clamp_min(0))
            new = torch.where(index >= 0, taken, mine)
        if scale:
            w = torch.stack([torch.ones(p.shape[-1]) if v is None else v for v in self.weights]).to(p)
            new = new * w[prompt.to(dev)][:, None, None, :]
        if self.trace is not None:
            self.trace.append({"step": self.step, "layer": layer, "cross": is_cross, "target": new.detach().clone(),
                               "source": theirs.detach().clone(), "own": mine.detach().clone()})
        p = p.clone()
        p[target.to(dev)] = new.to(p.dtype)
        return p.view_as(probs)


class ControlledProcessor:
    """An attention processor that computes the maps explicitly and lets the control edit them (the arithmetic of
    diffusers' plain AttnProcessor); layers it cannot follow (spatial / group norms) keep their processor."""

    def __init__(self, control: AttentionControl, original: Any, layer: str) -> None:
        self.control, self.original, self.layer = control, original, layer

    def __call__(self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, **kwargs: Any):
        if (self.control.rows is None or attn.spatial_norm is not None or attn.group_norm is not None
                or hidden_states.ndim != 3):
            return self.original(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        residual, is_cross = hidden_states, encoder_hidden_states is not None
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        attention_mask = attn.prepare_attention_mask(attention_mask, context.shape[1], context.shape[0])
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key, value = attn.head_to_batch_dim(attn.to_k(context)), attn.head_to_batch_dim(attn.to_v(context))
        probs = self.control(attn.get_attention_scores(query, key, attention_mask), attn.heads, is_cross, self.layer)
        out = attn.to_out[1](attn.to_out[0](attn.batch_to_head_dim(torch.bmm(probs, value))))
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def build_control(tokenizer: Any, edit: AttentionEdit, sources: list[str], targets: list[str],
                  timesteps: list[int], *, trace: bool = False) -> AttentionControl:
    """The control for target prompts ``targets`` (one per target row) edited from ``sources`` (the source prompt
    of each target row), tokenized as the text encoder reads them."""
    length = tokenizer.model_max_length

    def ids(text: str, special: bool = True) -> list[int]:
        return tokenizer(text, truncation=True, max_length=length, add_special_tokens=special).input_ids

    maps, weights = [], []
    for src, tgt in zip(sources, targets):
        a, b = ids(src), ids(tgt)
        if edit.mode == "replace" and len(a) != len(b):
            raise CycleDiffError(f"attention replace (word swap) needs prompts of as many tokens; {src!r} has "
                                 f"{len(a)}, {tgt!r} has {len(b)}: use refine")
        maps.append(list(range(length)) if edit.mode == "replace" else token_map(a, b, length))
        scale = None
        for word, value in edit.weights.items():
            w = ids(word, special=False)
            at = [i for i in range(len(b) - len(w) + 1) if b[i:i + len(w)] == w] if w else []
            if not at:
                raise CycleDiffError(f"the attention weight's word {word!r} is not in the target prompt {tgt!r}")
            scale = torch.ones(length) if scale is None else scale
            for i in at:
                scale[i:i + len(w)] = float(value)
        weights.append(scale)
    return AttentionControl(edit, timesteps, maps, weights, trace=trace)


@contextmanager
def controlled(unet: torch.nn.Module, control: AttentionControl, *, compiled: bool) -> Iterator[None]:
    """The UNet's attention processors replaced by controlled ones while the block runs (restored after)."""
    if compiled:
        warnings.warn("attention control runs the UNet eagerly: the compiled fast path cannot see the edited "
                      "attention maps, so this edit does not use it", stacklevel=4)
    originals = dict(unet.attn_processors)
    unet.set_attn_processor({name: ControlledProcessor(control, proc, name) for name, proc in originals.items()})
    try:
        yield
    finally:
        unet.set_attn_processor(originals)


__all__ = ["MODES", "AttentionControl", "AttentionEdit", "ControlledProcessor", "build_control", "controlled",
           "token_map"]
