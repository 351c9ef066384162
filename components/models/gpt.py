"""A character-level GPT: a nanoGPT-style decoder-only transformer over token ids.

Radford et al. 2019 (GPT-2) as in Karpathy's nanoGPT: pre-LN blocks, learned positional embeddings,
causal self-attention, the token embedding tied to the output head. Batches are ``(ids (B, T), y)`` from
``components.data.text.encode``: ``BOS c_1 .. c_L EOS PAD ..``; the model predicts ``ids[:, 1:]`` from
``ids[:, :-1]`` and PAD targets are ignored, so EOS counts as a predicted token (the model must learn where a
name ends): the NLL is per character *including* EOS, as in makemore.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.data.text import BOS, EOS, PAD, decode, seq_len, vocab_size
from components.errors import ConfigError
from components.models.base import Batch, GenerativeModel, reject_options
from components.models.configs import GPTConfig


class CausalSelfAttention(nn.Module):
    def __init__(self, *, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        if n_embd % n_head:
            raise ConfigError(f"model.n_embd: expected a multiple of model.n_head = {n_head}, got {n_embd}")
        self.n_head = n_head
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 × (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, *, n_embd: int, dropout: float, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2, Radford et al. 2019 §2.3): x + attn(ln(x)), x + mlp(ln(x))."""

    def __init__(self, *, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd=n_embd, n_head=n_head, dropout=dropout, bias=bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd=n_embd, dropout=dropout, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Token ids (B, T) -> next-token logits (B, T, vocab_size)."""

    def __init__(
        self,
        *,
        vocab_size: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float,
        bias: bool,
    ):
        super().__init__()
        self.block_size = block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(n_embd=n_embd, n_head=n_head, dropout=dropout, bias=bias) for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying (Press & Wolf, arXiv 1608.05859)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                # GPT-2's scaled init of residual projections: std 0.02 / sqrt(2 * n_layer)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: Tensor) -> Tensor:
        B, T = idx.shape
        if T > self.block_size:
            raise ValueError(f"Transformer.forward: expected at most block_size = {self.block_size} tokens, got {T}")
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


class GPT(GenerativeModel):
    """Next-character prediction with cross-entropy; samples start at BOS and stop at EOS."""

    family = "gpt"
    sample_params: ClassVar[dict[str, Any]] = {"temperature": 1.0}  # the registered sampler's params schema

    def __init__(self, *, spec: DataSpec, config: GPTConfig):
        super().__init__(spec=spec, config=config)
        self.net = Transformer(
            vocab_size=vocab_size(spec),
            block_size=seq_len(spec) - 1,  # inputs are ids[:, :-1]
            n_layer=config.n_layer,
            n_head=config.n_head,
            n_embd=config.n_embd,
            dropout=config.dropout,
            bias=config.bias,
        )

    def logits(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Next-token logits (B, T-1, V) for ``ids[:, :-1]`` and their targets ``ids[:, 1:]`` (B, T-1)."""
        return self.net(ids[:, :-1]), ids[:, 1:]

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        logits, targets = self.logits(batch[0])  # (B, T-1, V), (B, T-1)
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)  # nats per char
        return {"loss": loss}

    @torch.no_grad()
    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        """Mean NLL in nats per predicted token (characters and EOS; PAD excluded) of this batch."""
        logits, targets = self.logits(batch[0])
        return {"nll_nats_per_char": F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        **unknown: Any,
    ) -> list[str]:
        """``n`` strings, sampled token by token from BOS until EOS, cut at the longest training length."""
        reject_options("gpt", unknown, ("temperature", "top_k"))
        if temperature <= 0:
            raise ConfigError(f"gpt.sample: expected temperature > 0, got {temperature}")
        device = self.net.lm_head.weight.device
        idx = torch.full((n, 1), BOS, dtype=torch.long, device=device)  # (n, 1)
        done = torch.zeros(n, dtype=torch.bool, device=device)  # (n,)
        for _ in range(self.net.block_size):
            logits = self.net(idx)[:, -1, :] / temperature  # (n, V)
            logits[:, [PAD, BOS]] = -math.inf  # never generated: only chars and EOS are real outputs
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]  # (n, 1)
                logits = logits.masked_fill(logits < kth, -math.inf)
            probs = F.softmax(logits, dim=-1).to(generator.device if generator is not None else device)
            nxt = torch.multinomial(probs, 1, generator=generator).to(device)  # (n, 1); CPU generator ok
            nxt = nxt.masked_fill(done[:, None], PAD)
            idx = torch.cat([idx, nxt], dim=1)  # (n, t+1)
            done |= nxt[:, 0] == EOS
            if done.all():
                break
        return [s[: self.spec.shape[0]] for s in decode(idx.cpu().numpy(), self.spec)]

    def sampler_info(self) -> dict[str, Any]:
        return {"sampler": "ancestral (token by token from BOS)"}


def build(config: GPTConfig, spec: DataSpec) -> GPT:
    if spec.kind != "text":
        raise ConfigError(f"gpt: expected a text dataset, got {spec.kind!r} dataset {spec.name!r}")
    return GPT(spec=spec, config=config)
