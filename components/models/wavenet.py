"""WaveNet: an exact-likelihood autoregressive model of raw audio, one mu-law sample at a time.

van den Oord et al., "WaveNet: A Generative Model for Raw Audio", arXiv 1609.03499. A waveform in [-1, 1] is
mu-law companded to ``mu + 1`` levels (§2.2) and each sample gets a softmax over the levels, conditioned on all
samples before it. The network is a stack of causal dilated 1-D convolutions (§2.1, dilations 1, 2, 4, ...,
repeated in ``dilation_cycles`` stacks, Fig. 3) with gated activations tanh ⊙ σ (§2.3, eq. 2), residual and
skip connections (§2.4, Fig. 4), and, when ``conditional``, a learned class embedding added inside every gate
as a global bias (§2.5, eq. 3: global conditioning on the class label); ``condition_on`` adds one embedding per
further attribute (the notes' timbre) to that bias, so the sampler can be asked for, or drawn at, every
attribute the audit measures.

Two samplers draw the same samples for the same generator (each step draws its level with the Gumbel-max
trick from one uniform per level, the same way in both):

- ``naive``: every sample reruns the network over the receptive field before it (O(receptive field × layers)
  work per sample);
- ``cached``: Fast WaveNet (Paine et al., arXiv 1611.09482): each layer keeps a queue of its past inputs
  (one per dilation step), so a sample costs O(layers): one tap-concatenation and two matrix products a layer.

The NLL is in nats per sample for training and bits per sample (``/ ln 2``) for reporting: the discrete
likelihood of the clips quantised to ``mu + 1`` mu-law levels, comparable only at equal ``mu``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from components.data.spec import DataSpec
from components.errors import ConfigError
from components.models.base import Batch, GenerativeModel, eval_mode, reject_options
from components.models.configs import WaveNetConfig

SAMPLERS = ("cached", "naive")


def mu_law_encode(x: Tensor | np.ndarray, mu: int = 255) -> Tensor:
    """Waveform in [-1, 1] -> int64 levels in {0, .., mu}: F(x) = sign(x) ln(1 + mu|x|) / ln(1 + mu)
    (arXiv 1609.03499 §2.2), then ``mu + 1`` equal bins over [-1, 1] (rounded to the nearest level).
    Values outside [-1, 1] are clipped."""
    x = torch.as_tensor(x).float().clamp(-1.0, 1.0)
    f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((f + 1) / 2 * mu + 0.5).floor().long().clamp_(0, mu)


def mu_law_decode(idx: Tensor | np.ndarray, mu: int = 255) -> Tensor:
    """Levels {0, .., mu} -> float32 waveform in [-1, 1], the inverse of :func:`mu_law_encode` at each
    level: F^-1(y) = sign(y) ((1 + mu)^|y| - 1) / mu with y = 2 idx / mu - 1."""
    f = 2 * torch.as_tensor(idx).float() / mu - 1
    return torch.sign(f) * torch.expm1(f.abs() * math.log1p(mu)) / mu


def gate(h: Tensor) -> Tensor:
    """Gated activation tanh(W_f * x) ⊙ σ(W_g * x) over the two channel halves (arXiv 1609.03499 eq. 2)."""
    a, b = h.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


def gumbel_draw(logits: Tensor, generator: torch.Generator | None, temperature: float) -> Tensor:
    """One level per row of ``logits`` (B, Q): argmax(logits / temperature + Gumbel noise), a draw from
    softmax(logits / temperature). The uniforms come from ``generator``'s device (a CPU one may drive a GPU
    model), one per level."""
    device = generator.device if generator is not None else logits.device
    u = torch.rand(logits.shape, generator=generator, device=device).to(logits.device)  # (B, Q)
    g = -torch.log(-torch.log(u.clamp_min(torch.finfo(u.dtype).tiny)))
    return (logits / temperature + g).argmax(dim=-1)  # (B,)


class ResidualLayer(nn.Module):
    """One gated residual layer (arXiv 1609.03499 Fig. 4): causal dilated conv -> gate -> 1×1 conv, split
    into the residual (added to the input) and the skip output."""

    def __init__(self, *, residual: int, skip: int, dilation: int, kernel_size: int):
        super().__init__()
        self.residual, self.skip, self.dilation, self.k = residual, skip, dilation, kernel_size
        self.conv = nn.Conv1d(residual, 2 * residual, kernel_size, dilation=dilation)  # filter and gate halves
        self.out = nn.Conv1d(residual, residual + skip, 1)  # residual and skip 1×1 convs, stacked

    @property
    def reach(self) -> int:
        """Past inputs the conv sees: (k − 1) × dilation."""
        return (self.k - 1) * self.dilation

    def forward(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, R, T) -> next residual stream (B, R, T) and skip output (B, S, T); ``cond`` (B, 2R, 1)."""
        h = self.conv(F.pad(x, (self.reach, 0)))  # (B, 2R, T): causal, left padding only (§2.1)
        if cond is not None:
            h = h + cond  # global conditioning: V_k^T h broadcast over time (eq. 3)
        res, skip = self.out(gate(h)).split([self.residual, self.skip], dim=1)
        return x + res, skip

    def step_weights(self) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        """The convs as matrices for one time step: (2R, k·R) over the taps oldest first, and (R + S, R)."""
        w = self.conv.weight.permute(0, 2, 1).reshape(2 * self.residual, self.k * self.residual)
        return w, self.conv.bias, self.out.weight[..., 0], self.out.bias

    def step(self, taps: Tensor, weights: tuple, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """One time step: ``taps`` (B, k·R) = inputs at t − (k−1)d, ..., t − d, t -> residual (B, R), skip (B, S)."""
        w, b, w_out, b_out = weights
        h = F.linear(taps, w, b)  # (B, 2R)
        if cond is not None:
            h = h + cond
        res, skip = F.linear(gate(h), w_out, b_out).split([self.residual, self.skip], dim=1)
        return taps[:, -self.residual :] + res, skip


@dataclass
class StepCache:
    """Fast WaveNet state (arXiv 1611.09482 §3): per layer, a ring buffer (reach, B, R) of its past inputs;
    slot ``τ mod reach`` holds the input at time τ (zeros before t = 0, like the convs' padding)."""

    queues: list[Tensor]
    table: Tensor
    weights: list[tuple]
    conds: list[Tensor | None]
    head: tuple[Tensor, Tensor, Tensor, Tensor]


class WaveNetNet(nn.Module):
    """mu-law levels (B, T) -> logits (B, Q, T) of each sample given the samples before it.

    The input of position t is the vector of level t − 1 (zeros at t = 0), shifted by one so that no layer ever
    sees the sample it predicts. ``input="embedding"``: a learned vector per level (the one-hot input of the
    paper times a learned matrix); ``input="scalar"``: a learned linear map (R × 2, and a bias) of the level's
    companded value 2l/mu − 1 and its amplitude mu_law_decode(l), so that neighbouring levels get neighbouring
    inputs from the start (as implementations with a scalar input do, e.g. NSynth's WaveNet, arXiv 1704.01279).
    Both are a table (Q, R) looked up per sample, the same in the parallel pass and the cached step.
    """

    def __init__(
        self,
        *,
        levels: int,
        residual_channels: int,
        skip_channels: int,
        dilation_cycles: int,
        layers_per_cycle: int,
        kernel_size: int,
        num_classes: int = 0,
        attribute_sizes: tuple[int, ...] = (),
        input: str = "embedding",
    ):
        super().__init__()
        R, S = residual_channels, skip_channels
        self.levels, self.residual = levels, R
        self.embedding = nn.Embedding(levels, R) if input == "embedding" else None
        if input == "scalar":
            mu = levels - 1
            f = 2 * torch.arange(levels, dtype=torch.float32) / mu - 1  # the companded value of each level
            self.register_buffer(
                "level_features", torch.stack([f, mu_law_decode(torch.arange(levels), mu)], 1), persistent=False
            )
            self.input_map = nn.Linear(2, R)
        elif input != "embedding":
            raise ValueError(f"WaveNetNet: expected input 'embedding' or 'scalar', got {input!r}")
        dilations = [2**i for _ in range(dilation_cycles) for i in range(layers_per_cycle)]  # 1, 2, 4, .., 1, 2, ..
        self.layers = nn.ModuleList(
            ResidualLayer(residual=R, skip=S, dilation=d, kernel_size=kernel_size) for d in dilations
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Conv1d(S, S, 1), nn.ReLU(), nn.Conv1d(S, levels, 1))  # Fig. 4
        self.cond = nn.Embedding(num_classes, len(dilations) * 2 * R) if num_classes else None  # V_k, every layer
        if attribute_sizes and not num_classes:
            raise ValueError("WaveNetNet: attribute conditioning needs the class conditioning too")
        # h = V_class y + sum_a V_a a: one global bias per layer from every conditioning variable (§2.5)
        self.attribute_cond = nn.ModuleList(nn.Embedding(k, len(dilations) * 2 * R) for k in attribute_sizes)
        for emb in self.attribute_cond:  # zeros: training starts from the class-conditional net (a second N(0, 1)
            nn.init.zeros_(emb.weight)  # bias would double the gates' bias variance and saturate them)
        #: previous samples the prediction of one sample depends on
        self.receptive_field = sum(layer.reach for layer in self.layers) + 1

    def input_table(self) -> Tensor:
        """The input vector (Q, R) of every level."""
        if self.embedding is not None:
            return self.embedding.weight
        return self.input_map(self.level_features)

    def conditioning(self, labels: Tensor | None) -> list[Tensor | None]:
        """Each layer's global bias (B, 2R) from ``labels``: the class (B,), or with attribute conditioning the
        class and then each attribute's id (B, 1 + A); Nones for an unconditional net."""
        if self.cond is None:
            return [None] * len(self.layers)
        if labels is None:
            raise ValueError("WaveNetNet: a conditional net needs labels")
        cols = labels.reshape(len(labels), -1)  # (B, 1 + A)
        if cols.shape[1] != 1 + len(self.attribute_cond):
            raise ValueError(
                f"WaveNetNet: expected labels (B, {1 + len(self.attribute_cond)}) (the class, then each attribute), "
                f"got {tuple(labels.shape)}"
            )
        h = self.cond(cols[:, 0])  # (B, layers·2R)
        for j, emb in enumerate(self.attribute_cond):
            h = h + emb(cols[:, 1 + j])
        return list(h.view(len(labels), len(self.layers), 2 * self.residual).unbind(1))

    def forward(self, idx: Tensor, labels: Tensor | None = None) -> Tensor:
        x = F.embedding(idx, self.input_table()).transpose(1, 2)  # (B, R, T)
        x = F.pad(x, (1, 0))[..., :-1]  # position t sees level t − 1: causal in the samples
        skips: Tensor | int = 0
        for layer, c in zip(self.layers, self.conditioning(labels), strict=True):
            x, s = layer(x, None if c is None else c[..., None])
            skips = skips + s  # (B, S, T)
        return self.head(skips)  # (B, Q, T)

    # Fast WaveNet (arXiv 1611.09482): a layer's output at t needs its inputs at t, t − d, .., t − (k−1)d; the
    # past ones were computed at earlier steps and wait in the layer's queue.

    def start_cache(self, n: int, labels: Tensor | None) -> StepCache:
        p = self.head[1].weight
        return StepCache(
            queues=[p.new_zeros(layer.reach, n, self.residual) for layer in self.layers],
            table=self.input_table(),
            weights=[layer.step_weights() for layer in self.layers],
            conds=self.conditioning(labels),
            head=(self.head[1].weight[..., 0], self.head[1].bias, self.head[3].weight[..., 0], self.head[3].bias),
        )

    def step(self, prev: Tensor | None, t: int, cache: StepCache) -> Tensor:
        """Logits (B, Q) of sample ``t`` from level ``prev`` (B,) of sample t − 1 (None at t = 0); updates the
        queues with this step's layer inputs."""
        n = cache.queues[0].shape[1]
        x = F.embedding(prev, cache.table) if prev is not None else cache.table.new_zeros(n, self.residual)  # (B, R)
        skips: Tensor | int = 0
        for layer, queue, w, c in zip(self.layers, cache.queues, cache.weights, cache.conds, strict=True):
            d, L = layer.dilation, layer.reach
            past = [queue[(t - (layer.k - 1 - j) * d) % L] for j in range(layer.k - 1)]  # oldest first, (B, R)
            taps = torch.cat([*past, x], dim=1)  # (B, k·R)
            queue[t % L] = x  # the slot of t − L, read above
            x, s = layer.step(taps, w, c)
            skips = skips + s  # (B, S)
        w1, b1, w2, b2 = cache.head
        return F.linear(F.relu(F.linear(F.relu(skips), w1, b1)), w2, b2)  # (B, Q)


class WaveNet(GenerativeModel):
    """Maximum likelihood: cross-entropy of each mu-law sample; ancestral sampling, naive or cached."""

    family = "wavenet"
    sample_params: ClassVar[dict[str, Any]] = {"sampler": "cached", "temperature": 1.0}

    def __init__(self, *, spec: DataSpec, config: WaveNetConfig):
        super().__init__(spec=spec, config=config)
        self.mu = config.mu
        self.length = spec.shape[-1]
        self.num_classes = spec.num_classes if config.conditional else 0
        self.batch_attributes = tuple(config.condition_on)  # batches are (x, y, *these ids)
        self.attribute_sizes = tuple(len(spec.attributes[a]) for a in self.batch_attributes)
        self.net = WaveNetNet(
            levels=config.mu + 1,
            residual_channels=config.residual_channels,
            skip_channels=config.skip_channels,
            dilation_cycles=config.dilation_cycles,
            layers_per_cycle=config.layers_per_cycle,
            kernel_size=config.kernel_size,
            num_classes=self.num_classes,
            attribute_sizes=self.attribute_sizes,
            input=config.input,
        )
        if self.num_classes:  # the training labels seen, per (class, *attributes): the shares the sampler draws at
            self.register_buffer("label_counts", torch.zeros(self.num_classes, *self.attribute_sizes, dtype=torch.long))
        self._last_sampling: dict[str, Any] | None = None

    def _labels(self, batch: Batch) -> Tensor | None:
        """The conditioning of a batch (x, y, *attributes): the class (B,), or (B, 1 + A) with attributes."""
        if not self.num_classes:
            return None
        y = batch[1]
        if (y < 0).any() or (y >= self.num_classes).any():
            raise ConfigError(
                f"wavenet: a conditional model expected class labels in [0, {self.num_classes}) for every clip, got "
                f"values in [{int(y.min())}, {int(y.max())}]; label the data or set model.conditional: false"
            )
        if not self.batch_attributes:
            return y.long()
        if len(batch) < 2 + len(self.batch_attributes):
            raise ConfigError(
                f"wavenet: expected batches (x, y, {', '.join(self.batch_attributes)}), got {len(batch)} tensors"
            )
        cols = [y.long()]
        for name, size, a in zip(self.batch_attributes, self.attribute_sizes, batch[2:], strict=False):
            if (a < 0).any() or (a >= size).any():
                raise ConfigError(
                    f"wavenet: expected {name} ids in [0, {size}) for every clip, got values in "
                    f"[{int(a.min())}, {int(a.max())}]"
                )
            cols.append(a.long())
        return torch.stack(cols, 1)  # (B, 1 + A)

    def nll_nats(self, batch: Batch, *, context: int = 0) -> Tensor:
        """Mean NLL per sample in nats of clips (B, 1, T) in [-1, 1], mu-law quantised; the first ``context``
        samples are only seen, not scored."""
        idx = mu_law_encode(batch[0][:, 0], self.mu)  # (B, T)
        logits = self.net(idx, self._labels(batch))  # (B, Q, T)
        return F.cross_entropy(logits[..., context:], idx[:, context:])

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        crop = self.config.train_crop
        context = 0
        if self.training and crop and crop < batch[0].shape[-1]:
            # one window for the whole batch: half the time the clip's start (the model must learn the onset
            # from silence, where sampling begins), else anywhere (global RNG: seeded per rank by the loop).
            # A window inside the clip brings the receptive field before it as unscored context: zeros there
            # would teach the model notes that start at full level out of silence, which no clip does.
            start = 0 if torch.rand(()) < 0.5 else int(torch.randint(0, batch[0].shape[-1] - crop + 1, ()))
            context = min(start, self.net.receptive_field - 1)
            batch = (batch[0][..., start - context : start + crop], *batch[1:])
        if self.training and self.num_classes:
            cols = self._labels(batch).reshape(len(batch[0]), -1)  # (B, 1 + A)
            flat = cols @ torch.tensor(self.label_counts.stride(), device=cols.device)  # row-major cell ids
            self.label_counts += torch.bincount(flat, minlength=self.label_counts.numel()).view_as(self.label_counts)
        loss = self.nll_nats(batch, context=context)
        return {"loss": loss, "bits_per_sample": loss.detach() / math.log(2)}

    @torch.no_grad()
    def likelihood(self, batch: Batch) -> dict[str, Tensor]:
        return {"nll_bits_per_sample": self.nll_nats(batch) / math.log(2)}

    def sampler_defaults(self) -> dict[str, Any]:
        """The config's sampler and temperature, so the registered model samples as the evaluation did."""
        return {"sampler": self.config.sampler, "temperature": self.config.temperature}

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        sampler: str | None = None,
        temperature: float | None = None,
        labels: Any = None,
        attributes: dict[str, Any] | None = None,
        **unknown: Any,
    ) -> Tensor:
        """``n`` clips (n, 1, T) in [-1, 1], drawn sample by sample.

        ``labels`` (a conditional model only): one class for all clips (an int) or one per clip (n,);
        ``attributes`` (a model with ``condition_on``): name -> one id or n ids. Whatever is unset is drawn
        from ``generator`` before the first sample at the shares the model was trained on (``label_counts``
        over (class, *attributes)): with nothing set, stratified over those cells (cell k gets floor(n p_k)
        clips, the remaining ones go to cells drawn in proportion to the remainders n p_k − floor(n p_k), in a
        random order); else each clip from the cells that agree with what is set (uniformly among them if
        the model saw none of them). Unset options take the config's.
        """
        reject_options("wavenet", unknown, ("sampler", "temperature", "labels", "attributes"))
        sampler = sampler or self.config.sampler
        if sampler not in SAMPLERS:
            raise ConfigError(f"wavenet.sample: expected sampler 'cached' or 'naive', got {sampler!r}")
        temperature = self.config.temperature if temperature is None else float(temperature)
        if not temperature > 0:
            raise ConfigError(f"wavenet.sample: expected temperature > 0, got {temperature}")
        device = self.net.head[1].weight.device
        y, source = self._sample_labels(n, labels, attributes, generator, device)
        with eval_mode(self):
            run = self._cached if sampler == "cached" else self._naive
            idx = run(n, y, generator, temperature)  # (n, T)
        self._last_sampling = {"sampler": sampler, "temperature": temperature, "labels": source}
        return mu_law_decode(idx, self.mu)[:, None]  # (n, 1, T)

    def _sample_labels(
        self,
        n: int,
        labels: Any,
        attributes: dict[str, Any] | None,
        generator: torch.Generator | None,
        device: torch.device,
    ) -> tuple[Tensor | None, str]:
        if not self.num_classes:
            if labels is not None or attributes:
                raise ConfigError(
                    "wavenet.sample: expected no labels for an unconditional model, got some; train with "
                    "model.conditional: true to condition on the class"
                )
            return None, "none (unconditional)"
        given = [self._given("labels", labels, self.num_classes, n)]
        attributes = dict(attributes or {})
        unknown = sorted(set(attributes) - set(self.batch_attributes))
        if unknown:
            raise ConfigError(
                f"wavenet.sample: expected attributes among {list(self.batch_attributes) or 'none'} "
                f"(model.condition_on), got {unknown}"
            )
        for name, size in zip(self.batch_attributes, self.attribute_sizes, strict=True):
            given.append(self._given(name, attributes.get(name), size, n))
        g_device = generator.device if generator is not None else device
        counts = self.label_counts.to(g_device).reshape(-1).double()  # (M,) over (class, *attributes) cells
        shape = self.label_counts.shape
        if all(v is not None for v in given):
            cols, source = torch.stack(given, 1), "given"
        elif all(v is None for v in given):
            if counts.sum() == 0:
                flat, source = torch.randint(len(counts), (n,), generator=generator, device=g_device), "uniform"
            else:
                flat, source = stratified_labels(n, counts / counts.sum(), generator), "training label shares"
            cols = torch.stack(torch.unravel_index(flat, shape), 1)
        else:  # draw what is unset from the cells that agree with what is set, at the training shares
            cells = torch.stack(torch.unravel_index(torch.arange(len(counts), device=g_device), shape), 1)  # (M, 1+A)
            agree = torch.ones(n, len(counts), dtype=torch.bool, device=g_device)
            for j, v in enumerate(given):
                if v is not None:
                    agree &= cells[None, :, j] == v.to(g_device)[:, None]
            w = counts[None] * agree  # (n, M)
            w = torch.where(w.sum(1, keepdim=True) > 0, w, agree.double())
            cols = cells[torch.multinomial(w, 1, generator=generator)[:, 0]]
            source = "partly given; the rest at the training shares given them"
        cols = cols.to(device)
        return (cols[:, 0] if not self.batch_attributes else cols), source

    @staticmethod
    def _given(name: str, value: Any, size: int, n: int) -> Tensor | None:
        """``value`` (one id or ``n`` ids in [0, size)) as (n,) int64 on the CPU; None stays None."""
        if value is None:
            return None
        v = torch.as_tensor(value, dtype=torch.long).reshape(-1).cpu()
        v = v.expand(n) if v.numel() == 1 else v
        unit = "class" if name == "labels" else "id"
        if v.numel() != n or (v < 0).any() or (v >= size).any():
            raise ConfigError(
                f"wavenet.sample: expected {name} as one {unit} or {n} {unit}{'es' if unit == 'class' else 's'} "
                f"in [0, {size}), got "
                f"{v.numel()} value(s) in [{int(v.min())}, {int(v.max())}]"
            )
        return v

    def _naive(self, n: int, y: Tensor | None, generator: torch.Generator | None, temperature: float) -> Tensor:
        """Each sample reruns the whole net over the receptive field before it (the last position's logits)."""
        idx = torch.zeros((n, self.length), dtype=torch.long, device=self.net.head[1].weight.device)
        rf = self.net.receptive_field
        for t in range(self.length):
            window = idx[:, max(0, t - rf) : t + 1]  # the level at t itself is never seen (causal shift)
            idx[:, t] = gumbel_draw(self.net(window, y)[..., -1], generator, temperature)
        return idx

    def _cached(self, n: int, y: Tensor | None, generator: torch.Generator | None, temperature: float) -> Tensor:
        """Fast WaveNet: O(layers) per sample from the layers' queues (arXiv 1611.09482 Alg. 1)."""
        idx = torch.zeros((n, self.length), dtype=torch.long, device=self.net.head[1].weight.device)
        cache = self.net.start_cache(n, y)
        prev = None
        for t in range(self.length):
            prev = gumbel_draw(self.net.step(prev, t, cache), generator, temperature)
            idx[:, t] = prev
        return idx

    def evaluation_figures(self, real: Batch, *, generator: torch.Generator) -> dict[str, Tensor]:
        """``spectrograms`` (2n, 1, F, frames), n = 8: log-magnitude spectrograms of real clips, then of samples
        (low frequencies at the bottom, 0 to −80 dB full scale mapped to [1, 0]); a grid of n columns."""
        x = real[0][:: max(1, len(real[0]) // 8)][:8].float().cpu()  # spread over the classes
        fake = self.sample(len(x), generator=generator).cpu()
        return {"spectrograms": spectrogram_image(torch.cat([x, fake]))}

    def sampler_info(self) -> dict[str, Any]:
        info = self._last_sampling or {"sampler": self.config.sampler, "temperature": self.config.temperature}
        how = {
            "cached": "ancestral, sample by sample, Fast WaveNet queues (arXiv 1611.09482)",
            "naive": "ancestral, sample by sample, the receptive field recomputed each step",
        }
        return {
            **info,
            "sampler_detail": how[info["sampler"]],
            "receptive_field_samples": self.net.receptive_field,
            "mu_law_levels": self.mu + 1,
        }


def stratified_labels(n: int, shares: Tensor, generator: torch.Generator | None) -> Tensor:
    """``n`` labels (n,) at ``shares`` (K,): floor(n p_k) of class k, the rest drawn without replacement in
    proportion to the remainders, then shuffled; all from ``generator`` (on its device)."""
    want = n * shares.double()
    counts = (want + 1e-9).floor().long()  # 10 of 120 at 1/12 despite round-off
    rest = n - int(counts.sum())
    if rest > 0:
        frac = (want - counts).clamp_min(0)
        frac = frac if frac.sum() > 0 else shares.double()
        counts[torch.multinomial(frac, rest, replacement=False, generator=generator)] += 1
    y = torch.repeat_interleave(torch.arange(len(shares), device=shares.device), counts)
    return y[torch.randperm(n, generator=generator, device=shares.device)]


def spectrogram_image(clips: Tensor, *, n_fft: int = 256, hop: int = 64, floor_db: float = -80.0) -> Tensor:
    """Clips (N, 1, T) -> spectrogram pictures (N, 1, n_fft/2 + 1, frames) in [0, 1] (Hann window; a
    full-scale sine reads 0 dB)."""
    window = torch.hann_window(n_fft)
    spec = torch.stft(clips[:, 0].float(), n_fft, hop, window=window, return_complex=True).abs()  # (N, F, frames)
    db = 20 * torch.log10(spec / (window.sum() / 2) + 1e-10)
    return ((db.clamp(floor_db, 0.0) - floor_db) / -floor_db).flip(1)[:, None]


def build(config: WaveNetConfig, spec: DataSpec) -> WaveNet:
    if spec.kind != "audio":
        raise ConfigError(f"family 'wavenet' expected an audio dataset, got {spec.name!r} of kind {spec.kind!r}")
    if len(spec.shape) != 2 or spec.shape[0] != 1 or spec.shape[1] < 2:
        raise ConfigError(
            f"family 'wavenet' expected mono clips of shape (1, T) with T >= 2, got {tuple(spec.shape)} in "
            f"{spec.name!r}; prepare the audio with mono: true"
        )
    if config.condition_on and not config.conditional:
        raise ConfigError(
            f"model.condition_on: expected conditional: true to condition on {config.condition_on}, got false"
        )
    missing = [a for a in config.condition_on if a not in spec.attributes]
    if missing or len(set(config.condition_on)) != len(config.condition_on):
        raise ConfigError(
            f"model.condition_on: expected distinct attributes of {spec.name!r} among "
            f"{sorted(spec.attributes) or 'none'}, got {config.condition_on}"
        )
    if config.conditional and spec.num_classes < 1:
        raise ConfigError(
            f"model.conditional: expected a labelled dataset to condition on, got {spec.name!r} without classes; "
            "set conditional: false or use class sub-folders"
        )
    return WaveNet(spec=spec, config=config)
