"""Augmented self-attention with the appearance-matching adapter, as swappable
diffusers attention processors.

``AugmentedAttention.of(unet)`` puts an ``AugmentedSelfAttnProcessor`` on every
self-attention layer (``attn1`` of each transformer block) and a
``PlanAwareCrossAttnProcessor`` (diffusers' ``AttnProcessor2_0`` that accepts and
ignores the plan) on the cross-attention layers that have the default processor.

Per-call state travels as an argument, the diffusers way: a UNet forward made with
``cross_attention_kwargs=plan.attention_kwargs()`` hands its ``AttentionPlan`` to
every processor. The processors and ``AugmentedAttention`` hold no per-call state,
so one UNet can serve several threads at once, each with its own plan (and
gradient checkpointing, which re-runs a block with the same arguments, sees the
same plan). Without a plan the processors compute plain self-attention with fused
``F.scaled_dot_product_attention``, exactly like diffusers' ``AttnProcessor2_0``.

In a plan every batch row of the UNet forward has one role, set by
``exemplar_row`` (one entry per row):

- ``-1``, plain: self-attention over its own tokens. The unconditional target
  rows of classifier-free guidance and the exemplar rows are plain.
- ``j >= 0``, read: the row's queries attend to [its own keys; row j's keys] and
  values. Row j is then a write row: its normalised hidden states (the input of
  ``attn1``, after the block's ``norm1``) are kept for this layer call and
  projected with this layer's ``to_k``/``to_v``. Several rows may read one row;
  a row that is read must itself be plain.

Because every row's exemplar is in the same batch, one UNet forward serves
targets and exemplars alike, and each operation is per row: a row's output
depends only on itself and the row it reads.

Modes, for the read rows (same weights):

- ``none``: no row may read (structure-only sampling).
- ``augmented``: [target; exemplar] attention, no correction (training-free).
- ``categorical``: exemplar logits + ``beta * C`` (fixed, no learned part).
- ``am_adapter``: exemplar logits A become ``A + phi(R) - max(phi(R)) / 4`` with
  ``R = concat(A.detach(), C)``. The max is taken per read row over all heads,
  query and exemplar positions (the authors' ``max()`` over the whole tensor at
  batch size 1, kept per row so that rows stay independent).

``categorical`` and ``am_adapter`` act only at layers with at most ``max_tokens``
query tokens; larger layers use plain augmented attention. Explicit logits are
formed only in ``am_adapter`` layers; everything else runs in fused SDPA
(``categorical`` passes its bias as SDPA's additive mask).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from amadapter.io.resize import resize_labels_nearest
from amadapter.models.class_cost import class_cost
from amadapter.models.matcher import AppearanceMatchingAdapter

MODES = ("none", "augmented", "categorical", "am_adapter")
DEFAULT_MODE = "am_adapter"  # what the sampler and the augment job render with unless told
NO_SLOT = 255  # a pixel whose queries read no exemplar, only their own tokens
PLAN_KWARG = "attention_plan"  # the cross_attention_kwargs entry that carries a call's plan
_INSTALL_LOCK = threading.Lock()  # two threads installing at once must install once


def token_grid(tokens: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) grid of a UNet layer with ``tokens`` tokens: the latent size
    halved some number of times (sizes are multiples of the UNet's total stride)."""
    h, w = latent_size
    while h * w > tokens and h % 2 == 0 and w % 2 == 0:
        h, w = h // 2, w // 2
    if h * w != tokens:
        raise ValueError(f"{tokens} tokens is no UNet level of a {latent_size} latent")
    return h, w


@dataclass
class AttentionPlan:
    """The row roles and options of the UNet forwards of one call (``AugmentedAttention.plan``).

    ``exemplar_row`` is (N,) (the row each row reads, -1 for none) or (N, K) (up to
    K rows each row reads, -1 padding). ``slots`` (N, H, W) uint8, optional, says per
    pixel of a reading row which of its K sources its queries may read (``NO_SLOT``:
    none, only its own tokens); without it every query reads every source.
    ``labels`` holds every row's train-ID map (N, H, W) (any size; only the read
    rows and the rows they read are used) and is needed by ``categorical`` and
    ``am_adapter``. ``latent_size`` is the UNet input's (h, w)."""

    mode: str
    exemplar_row: torch.Tensor
    latent_size: tuple[int, int]
    labels: torch.Tensor | None = None
    adapter: AppearanceMatchingAdapter | None = None
    max_tokens: int = 2048
    beta: float = 5.0
    slots: torch.Tensor | None = None
    _costs: dict = field(default_factory=dict, repr=False)
    _allowed: dict = field(default_factory=dict, repr=False)
    _rows: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        rows = self.exemplar_row.long()
        rows = rows[:, None] if rows.dim() == 1 else rows
        self.readers = torch.nonzero((rows >= 0).any(dim=1)).flatten()
        sources = rows[self.readers]
        self.valid = sources >= 0  # (readers, K): False where a row reads fewer than K
        # padding gathers the row's first source; its tokens are masked out (``allowed``)
        self.sources = torch.where(self.valid, sources, sources[:, :1])
        self.plain = torch.nonzero((rows < 0).all(dim=1)).flatten()
        if self.mode == "none" and self.readers.numel():
            raise ValueError("mode 'none' has no exemplar rows to read")
        if self.readers.numel() and (rows[self.sources.flatten()] >= 0).any():
            raise ValueError("a row that is read must itself use plain self-attention")
        if self.readers.numel() and not self.valid[:, 0].all():
            raise ValueError("a reading row lists its sources first, padding (-1) after")
        if self.mode in ("categorical", "am_adapter") and self.readers.numel() and self.labels is None:
            raise ValueError(f"mode {self.mode!r} needs the label maps of the rows")
        if self.slots is None and not self.valid.all():
            raise ValueError("rows with fewer sources than others need slots")
        if self.slots is not None and self.readers.numel():
            used = self.slots[self.readers].long()
            count = self.valid.sum(dim=1).view(-1, 1, 1)
            if ((used != NO_SLOT) & (used >= count)).any():
                raise ValueError("a slot names a source its row does not have")

    def attention_kwargs(self) -> dict:
        """``cross_attention_kwargs`` for ``unet(...)`` that hand this plan to the processors."""
        return {PLAN_KWARG: self}

    def rows(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(readers, sources (readers, K), plain) row indices on ``device``; moved once per plan."""
        if device not in self._rows:
            self._rows[device] = tuple(t.to(device) for t in (self.readers, self.sources, self.plain))
        return self._rows[device]

    def cost(self, grid: tuple[int, int], device) -> torch.Tensor:
        """C for the read rows at this grid, (readers, K, h*w, h*w), zero where a query
        may not read that source; computed once per plan."""
        if grid not in self._costs:
            labels = self.labels.to(device)
            readers = labels[self.readers]
            cost = torch.stack(
                [class_cost(readers, labels[self.sources[:, j]], grid, grid) for j in range(self.sources.shape[1])],
                dim=1,
            )
            allowed = self.allowed(grid, device)
            self._costs[grid] = cost if allowed is None else cost * allowed[..., None]
        return self._costs[grid]

    def allowed(self, grid: tuple[int, int], device) -> torch.Tensor | None:
        """(readers, K, h*w) bool: which queries may read which source at this grid;
        None when every query reads every source."""
        if self.slots is None:
            return None
        if grid not in self._allowed:
            slots = resize_labels_nearest(self.slots[self.readers], grid).flatten(1).to(device)
            k = torch.arange(self.sources.shape[1], device=device)
            self._allowed[grid] = slots[:, None, :] == k[None, :, None]
        return self._allowed[grid]


def _block_group(processor_name: str) -> str:
    return {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}[processor_name.split(".")[0]]


class AugmentedSelfAttnProcessor:
    """Self-attention processor for one ``attn1`` layer; see the module docstring."""

    def __init__(self, group: str):
        self.group = group

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        attention_plan: AttentionPlan | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError("augmented self-attention takes neither context nor mask")
        n, tokens, _ = hidden_states.shape
        heads = attn.heads

        def split(x):
            return x.view(n, tokens, heads, -1).transpose(1, 2)

        q, k, v = split(attn.to_q(hidden_states)), split(attn.to_k(hidden_states)), split(attn.to_v(hidden_states))
        plan = attention_plan
        if plan is None or not plan.readers.numel():
            out = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        else:
            readers, sources, p = plan.rows(q.device)
            k_ex = [k[sources[:, j]] for j in range(sources.shape[1])]
            v_ex = [v[sources[:, j]] for j in range(sources.shape[1])]
            read = self._read(attn, plan, q[readers], k[readers], v[readers], k_ex, v_ex)
            out = q.new_zeros(q.shape).index_copy(0, readers, read)
            if p.numel():
                out = out.index_copy(0, p, F.scaled_dot_product_attention(q[p], k[p], v[p], scale=attn.scale))
        out = out.transpose(1, 2).reshape(n, tokens, -1).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor

    def _read(self, attn, plan: AttentionPlan, q, k_own, v_own, k_ex: list, v_ex: list) -> torch.Tensor:
        """Attention of read rows over [own; source 1; ...; source K] tokens,
        (readers, heads, L, d). A query's logits to a source it may not read are -inf."""
        tokens = q.shape[2]
        keys, values = torch.cat([k_own, *k_ex], dim=2), torch.cat([v_own, *v_ex], dim=2)
        grid = token_grid(tokens, plan.latent_size)
        allowed = plan.allowed(grid, q.device)
        if plan.mode == "augmented" or tokens > plan.max_tokens:
            if allowed is None:
                return F.scaled_dot_product_attention(q, keys, values, scale=attn.scale)
            bias = torch.zeros(q.shape[0], tokens, keys.shape[2], dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(_blocked(allowed, tokens, [k.shape[2] for k in k_ex]), float("-inf"))
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias[:, None], scale=attn.scale)
        cost = plan.cost(grid, q.device)
        if plan.mode == "categorical":
            bias = torch.cat([torch.zeros_like(cost[:, 0])] + [plan.beta * cost[:, j] for j in range(len(k_ex))], -1)
            if allowed is not None:
                bias = bias.masked_fill(_blocked(allowed, tokens, [k.shape[2] for k in k_ex]), float("-inf"))
            return F.scaled_dot_product_attention(q, keys, values, attn_mask=bias[:, None].to(q.dtype), scale=attn.scale)
        inputs = (plan.adapter, grid, allowed, cost, q, k_own, k_ex, values, attn.scale)
        if torch.is_grad_enabled() and getattr(plan.adapter, "gradient_checkpointing", False):
            # training: keep only the inputs and recompute the (readers, heads, L, L) logits
            # and phi's activations in backward (gigabytes per row at 2,048-token layers)
            return checkpoint(self._adapter_attention, *inputs, use_reentrant=False)
        return self._adapter_attention(*inputs)

    def _adapter_attention(self, adapter, grid, allowed, cost, q, k_own, k_ex: list, values, scale) -> torch.Tensor:
        logits = [q @ k_own.transpose(-1, -2) * scale]
        for j, k in enumerate(k_ex):
            exemplar_logits = q @ k.transpose(-1, -2) * scale
            phi = adapter(self.group, exemplar_logits, cost[:, j], grid, grid).to(exemplar_logits.dtype)
            corrected = exemplar_logits + phi - phi.amax(dim=(1, 2, 3), keepdim=True) / 4
            if allowed is not None:
                corrected = corrected.masked_fill(~allowed[:, j, None, :, None], float("-inf"))
            logits.append(corrected)
        probs = torch.cat(logits, dim=-1).float().softmax(dim=-1)
        return probs.to(values.dtype) @ values


def _blocked(allowed: torch.Tensor, tokens: int, source_tokens: list[int]) -> torch.Tensor:
    """(readers, Lq, Lq + sum Lx) bool: True where a query may not attend (a source its
    pixel is not assigned to; its own tokens are always allowed)."""
    own = torch.zeros_like(allowed[:, 0])[..., None].expand(-1, -1, tokens)
    sources = [(~allowed[:, j])[..., None].expand(-1, -1, n) for j, n in enumerate(source_tokens)]
    return torch.cat([own, *sources], dim=-1)


class PlanAwareCrossAttnProcessor(AttnProcessor2_0):
    """diffusers' ``AttnProcessor2_0`` for cross-attention layers, taking the call's plan
    as an argument it does not need (diffusers warns on every layer and step about
    ``cross_attention_kwargs`` a processor's signature lacks)."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        attention_plan: AttentionPlan | None = None,
    ) -> torch.Tensor:
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class AugmentedAttention:
    """The augmented self-attention of one UNet: ``of`` installs the processors (once)
    and ``plan`` makes the per-call ``AttentionPlan``s. Holds no per-call state."""

    def __init__(self, unet: UNet2DConditionModel):
        self.heads = {m.heads for name, m in unet.named_modules() if name.endswith("attn1")}

    @classmethod
    def of(cls, unet: UNet2DConditionModel) -> "AugmentedAttention":
        """Install the processors on ``unet`` unless they are there (thread-safe)."""
        with _INSTALL_LOCK:
            if not _processors_installed(unet):
                processors = dict(unet.attn_processors)
                for name, processor in processors.items():
                    if name.endswith("attn1.processor"):
                        processors[name] = AugmentedSelfAttnProcessor(_block_group(name))
                    elif type(processor) is AttnProcessor2_0:
                        processors[name] = PlanAwareCrossAttnProcessor()
                unet.set_attn_processor(processors)
        return cls(unet)

    def plan(
        self,
        exemplar_row: torch.Tensor,
        mode: str,
        latent_size: tuple[int, int],
        labels: torch.Tensor | None = None,
        adapter: AppearanceMatchingAdapter | None = None,
        max_tokens: int | None = None,
        beta: float = 5.0,
        slots: torch.Tensor | None = None,
    ) -> AttentionPlan:
        """The plan of one call: UNet forwards made with ``cross_attention_kwargs=
        plan.attention_kwargs()`` use these row roles (see the module docstring).

        ``adapter`` is needed by mode ``am_adapter``; ``max_tokens`` defaults to the
        adapter's configured limit (2048 without an adapter)."""
        if adapter is not None and self.heads != {adapter.config.heads}:
            raise ValueError(f"adapter has {adapter.config.heads} heads, the UNet's self-attention {self.heads}")
        if mode == "am_adapter" and adapter is None:
            raise ValueError("mode 'am_adapter' needs an AppearanceMatchingAdapter")
        if max_tokens is None:
            max_tokens = adapter.config.max_tokens if adapter is not None else 2048
        return AttentionPlan(mode, exemplar_row.cpu(), tuple(latent_size), labels, adapter, max_tokens, beta, slots)


def _processors_installed(unet: UNet2DConditionModel) -> bool:
    """Whether every ``attn1`` carries our processor (a caller may have replaced them)."""
    return all(
        isinstance(p, AugmentedSelfAttnProcessor)
        for name, p in unet.attn_processors.items()
        if name.endswith("attn1.processor")
    )
