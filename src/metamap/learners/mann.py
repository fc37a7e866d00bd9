"""Memory-augmented neural network (MANN, Santoro et al. 2016): an LSTM with an LRUA external memory.

An episode is a sequence: at step t the controller sees the input ``x_t``
and the one-hot label of the step before (:func:`metamap.tasks.sequence.shift_labels`),
and predicts ``y_t``. Adaptation is reading the support sequence: no
parameter changes, only the memory and the LSTM state.

One step, for T tasks, H heads, N memory slots of width W (all batched over T):

1. controller: ``h_t, c_t = LSTM([f(x_t), y_{t-1}, r_{t-1}], (h_{t-1}, c_{t-1}))``
   (``f`` the encoder; feeding back the previous reads ``r_{t-1}`` is the NTM's way);
2. per head: key ``k_t = tanh(.)``, write gate ``alpha_t = sigmoid(.)`` and key
   strength ``beta_t = 1 + softplus(.)``, all linear in ``h_t``;
3. LRUA write: ``w^w_t = alpha_t w^r_{t-1} + (1 - alpha_t) w^lu_{t-1}``
   (:func:`lrua_write_weights`), where ``w^lu_{t-1}`` marks the H least-used
   slots of ``w^u_{t-1}`` (:func:`least_used_weights`); the single least-used
   slot is zeroed first, then ``M_t = M_{t-1} + sum_h w^w_t k_t^T`` (:func:`lrua_write`);
4. content read: ``w^r_t = softmax(beta_t cos(k_t, M_t))``, ``r_t = w^r_t M_t``
   (:func:`cosine_read_weights`);
5. usage: ``w^u_t = gamma w^u_{t-1} + sum_h (w^r_t + w^w_t)`` (:func:`usage_update`);
6. output: logits ``= Linear([h_t, r_t])``.

Where this differs from the paper, on purpose:

- key strength ``beta``: Santoro et al. use the plain cosine; with 128 slots
  a softmax of values in [-1, 1] can put at most ~2% of the weight on one
  slot, so (as in the NTM of Graves et al. 2014) each head learns a
  sharpness, initialised to about 10 (``strength_init``). On 5-way toy
  sequences, 400 steps reached 2nd-instance accuracy ~0.9 with it and ~0.55
  without it (plain cosine);
- the encoder ``f`` may be any module (default: flatten the raw input, as the
  paper's raw pixels).

Built by name as ``make_learner("mann", encoder, n_way=...)``. The
``metamap train`` recipes do not offer it: they feed episodes whose support
is grouped by label and build a Conv4 with a classifier head, while MANN
needs shuffled sequences (:class:`metamap.tasks.sequence.SequenceEpisodes`)
and an embedding encoder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from metamap.errors import ConfigError, ShapeError, describe
from metamap.learners.base import AdaptOptions, MetaLearner
from metamap.learners.losses import per_task_loss
from metamap.tasks.episode import Episode
from metamap.tasks.sequence import label_inputs

_EPS = 1e-8


# -- memory addressing: pure functions on tensors batched over tasks [T, ...] -----------------


def cosine_read_weights(keys: torch.Tensor, memory: torch.Tensor, strength: torch.Tensor | None = None) -> torch.Tensor:
    """Content weights ``[T, H, N]``: softmax over slots of ``strength * cos(key, slot)``.

    ``keys [T, H, W]``, ``memory [T, N, W]``, ``strength [T, H]`` (> 0) or None (1).
    An all-zero slot has cosine 0.
    """
    if keys.dim() != 3 or memory.dim() != 3 or keys.shape[0] != memory.shape[0] or keys.shape[2] != memory.shape[2]:
        raise ShapeError(f"expected keys [T, H, W] and memory [T, N, W], got {describe(keys)} and {describe(memory)}")
    dots = keys @ memory.transpose(1, 2)
    norms = keys.norm(dim=-1)[:, :, None] * memory.norm(dim=-1)[:, None, :]
    cosine: torch.Tensor = dots / norms.clamp(min=_EPS)
    if strength is not None:
        cosine = cosine * strength[..., None]
    return cosine.softmax(dim=-1)


def least_used_weights(usage: torch.Tensor, n: int) -> torch.Tensor:
    """``w^lu [T, N]``: 1 on the ``n`` slots of smallest usage, 0 elsewhere (ties: lower index).

    ``usage [T, N]``, ``1 <= n <= N``. The paper's ``w^lu_t(i) = 1`` where
    ``w^u_t(i) <= m(w^u_t, n)``, ``n`` the number of reads. Not
    differentiable (a selection).
    """
    if usage.dim() != 2 or not 1 <= n <= usage.shape[1]:
        raise ShapeError(f"expected usage [T, N] with N >= {n}, got {describe(usage)}")
    order = usage.detach().argsort(dim=1, stable=True)[:, :n]
    return F.one_hot(order, usage.shape[1]).to(usage.dtype).sum(1)


def lrua_write_weights(previous_read: torch.Tensor, least_used: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Per head ``w^w = gate * w^r_{t-1} + (1 - gate) * w^lu_{t-1}``: ``[T, H, N]``.

    ``previous_read [T, H, N]``, ``least_used [T, N]`` (shared by the heads),
    ``gate [T, H]`` in (0, 1).
    """
    t, h, n = previous_read.shape
    if least_used.shape != (t, n) or gate.shape != (t, h):
        raise ShapeError(
            f"expected previous_read [T, H, N], least_used [T, N] and gate [T, H], got {describe(previous_read)}, "
            f"{describe(least_used)} and {describe(gate)}"
        )
    g = gate[..., None]
    return g * previous_read + (1 - g) * least_used[:, None, :]


def lrua_write(memory: torch.Tensor, erase: torch.Tensor, write: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Zero the slots marked by ``erase``, then add every head's key by its write weights: ``[T, N, W]``.

    ``memory [T, N, W]``, ``erase [T, N]`` (1 on the slot to zero: the least
    used one, ``least_used_weights(usage, 1)``), ``write [T, H, N]``, ``keys [T, H, W]``.
    """
    t, h, n = write.shape
    if memory.shape[:2] != (t, n) or erase.shape != (t, n) or keys.shape != (t, h, memory.shape[2]):
        raise ShapeError(
            f"expected memory [T, N, W], erase [T, N], write [T, H, N], keys [T, H, W]; got {describe(memory)}, "
            f"{describe(erase)}, {describe(write)}, {describe(keys)}"
        )
    return memory * (1 - erase)[..., None] + write.transpose(1, 2) @ keys


def usage_update(usage: torch.Tensor, read: torch.Tensor, write: torch.Tensor, gamma: float) -> torch.Tensor:
    """``w^u_t = gamma * w^u_{t-1} + sum over heads of (w^r_t + w^w_t)``: ``[T, N]``."""
    if read.shape != write.shape or usage.shape != (read.shape[0], read.shape[2]):
        raise ShapeError(
            f"expected usage [T, N], read and write [T, H, N]; got {describe(usage)}, {describe(read)}, {describe(write)}"
        )
    return gamma * usage + read.sum(1) + write.sum(1)


# -- the learner -----------------------------------------------------------------------------


@dataclass
class MemoryState:
    """What a MANN carries from step to step, batched over T tasks.

    ``h, c [T, hidden]`` (LSTM), ``memory [T, N, W]``, ``usage [T, N]``,
    ``read_weights [T, H, N]`` and ``reads [T, H, W]`` of the last step,
    ``label [T, n_way]`` the label input the next step sees.
    """

    h: torch.Tensor
    c: torch.Tensor
    memory: torch.Tensor
    usage: torch.Tensor
    read_weights: torch.Tensor
    reads: torch.Tensor
    label: torch.Tensor

    def where(self, keep_new: torch.Tensor, old: MemoryState) -> MemoryState:
        """Per task, this state where ``keep_new [T]`` (bool) else ``old``."""
        return MemoryState(
            **{
                f.name: torch.where(
                    keep_new.view(-1, *[1] * (getattr(self, f.name).dim() - 1)),
                    getattr(self, f.name),
                    getattr(old, f.name),
                )
                for f in fields(self)
            }
        )

    def repeat(self, n: int) -> MemoryState:
        """Each task's state ``n`` times in a row: batch ``T * n`` (task-major)."""
        return MemoryState(**{f.name: getattr(self, f.name).repeat_interleave(n, dim=0) for f in fields(self)})


class MANN(MetaLearner):
    """LSTM controller + LRUA memory; adapts by reading the support sequence (no gradient steps).

    Args:
        encoder: maps inputs ``[N, *x_shape]`` to features ``[N, D]``; ``None``
            flattens (the paper's raw pixels). Use GroupNorm/LayerNorm only.
        n_way: classes per task (width of the label input and of the logits).
        feature_dim: D; ``None`` reads ``encoder.embedding_dim`` (e.g. :class:`metamap.nn.Conv4`).
        hidden: LSTM width (paper: 200).
        memory_slots, memory_width: N x W (paper: 128 x 40).
        read_heads: H (paper: 4).
        gamma: usage decay (paper: 0.95).
        strength_init: initial key strength ``beta`` of every head (not in the paper; see the module notes).
        chunk_size: tasks per chunk in ``meta_backward``/``evaluate``.

    Inputs are episodes whose support is the sequence, in order (use
    :class:`metamap.tasks.sequence.SequenceEpisodes`). ``meta_loss`` is the
    mean cross-entropy over every support step and every query;
    ``adapt(...).predict(x_query)`` answers each query independently from
    the state after the whole support.
    """

    outputs_logits = False

    def __init__(
        self,
        encoder: nn.Module | None = None,
        *,
        n_way: int = 5,
        feature_dim: int | None = None,
        hidden: int = 200,
        memory_slots: int = 128,
        memory_width: int = 40,
        read_heads: int = 4,
        gamma: float = 0.95,
        strength_init: float = 10.0,
        chunk_size: int | None = None,
    ) -> None:
        encoder = nn.Flatten() if encoder is None else encoder
        super().__init__(encoder, loss="cross_entropy", chunk_size=chunk_size)
        if feature_dim is None:
            feature_dim = getattr(encoder, "embedding_dim", None)
            if feature_dim is None:
                raise ConfigError(
                    f"MANN: give feature_dim (the width of the encoder's output); {type(encoder).__name__} "
                    "has no embedding_dim"
                )
        sizes = {
            "n_way": n_way,
            "feature_dim": feature_dim,
            "hidden": hidden,
            "memory_slots": memory_slots,
            "memory_width": memory_width,
            "read_heads": read_heads,
        }
        bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
        if bad or n_way < 2 or read_heads > memory_slots or not 0 < gamma <= 1 or not strength_init > 1:
            raise ConfigError(
                f"MANN: expected positive int sizes, n_way >= 2, read_heads <= memory_slots, 0 < gamma <= 1 and "
                f"strength_init > 1; got {sizes}, gamma={gamma}, strength_init={strength_init}"
            )
        self.n_way, self.feature_dim, self.hidden = n_way, feature_dim, hidden
        self.memory_slots, self.memory_width, self.read_heads, self.gamma = (
            memory_slots,
            memory_width,
            read_heads,
            gamma,
        )
        self.controller = nn.LSTMCell(feature_dim + n_way + read_heads * memory_width, hidden)
        self.heads = nn.Linear(hidden, read_heads * (memory_width + 2))  # key, write gate, key strength
        with (
            torch.no_grad()
        ):  # beta = 1 + softplus(b) = strength_init at a zero input: b = softplus^-1(strength_init - 1)
            self.heads.bias.view(read_heads, memory_width + 2)[:, -1] = math.log(math.expm1(strength_init - 1))
        self.output = nn.Linear(hidden + read_heads * memory_width, n_way)

    # -- the recurrence ------------------------------------------------------------------------

    def initial_state(self, n_tasks: int, device: torch.device, dtype: torch.dtype) -> MemoryState:
        """Empty memory and zero LSTM state for ``n_tasks`` tasks."""
        h, n, w = self.read_heads, self.memory_slots, self.memory_width

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(n_tasks, *shape, device=device, dtype=dtype)

        return MemoryState(
            h=zeros(self.hidden),
            c=zeros(self.hidden),
            memory=zeros(n, w),
            usage=zeros(n),
            read_weights=zeros(h, n),
            reads=zeros(h, w),
            label=zeros(self.n_way),
        )

    def step(self, features: torch.Tensor, state: MemoryState) -> tuple[torch.Tensor, MemoryState]:
        """One step for T tasks: ``features [T, D]`` and ``state`` (its ``label`` is the shifted label input).

        Returns logits ``[T, n_way]`` and the state after the step (with the
        same label input; the caller sets the next one).
        """
        t = features.shape[0]
        controller_in = torch.cat([features, state.label, state.reads.flatten(1)], dim=1)
        h, c = self.controller(controller_in, (state.h, state.c))
        params = self.heads(h).view(t, self.read_heads, self.memory_width + 2)
        keys = torch.tanh(params[..., : self.memory_width])
        gate = torch.sigmoid(params[..., self.memory_width])
        strength = 1 + F.softplus(params[..., self.memory_width + 1])
        least = least_used_weights(state.usage, self.read_heads)
        write = lrua_write_weights(state.read_weights, least, gate)
        memory = lrua_write(state.memory, least_used_weights(state.usage, 1), write, keys)
        read_weights = cosine_read_weights(keys, memory, strength)
        reads = read_weights @ memory
        usage = usage_update(state.usage, read_weights, write, self.gamma)
        logits = self.output(torch.cat([h, reads.flatten(1)], dim=1))
        return logits, MemoryState(h, c, memory, usage, read_weights, reads, state.label)

    def run_sequence(
        self, x_seq: torch.Tensor, y_seq: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, MemoryState]:
        """Read the sequences ``x_seq [T, L, *x]``, ``y_seq int64 [T, L]``: logits ``[T, L, n_way]`` and the final state.

        ``mask bool [T, L]``: a False step leaves the state as it was and its
        label is never shown (its logits are still computed, to be ignored).
        The final state's label input is the last valid label. The inputs are
        trusted (see :meth:`sequence_logits` and :meth:`adapt`, which check them).
        """
        t, length = y_seq.shape
        features = self.model(x_seq.reshape(t * length, *x_seq.shape[2:])).reshape(t, length, -1)
        if features.shape[-1] != self.feature_dim:
            raise ShapeError(
                f"MANN: the encoder gives {features.shape[-1]} features per example, feature_dim is {self.feature_dim}"
            )
        labels = label_inputs(y_seq, self.n_way, mask).to(features.dtype)
        state = self.initial_state(t, features.device, features.dtype)
        logits = []
        for i in range(length):
            state.label = labels[:, i]
            out, new = self.step(features[:, i], state)
            state = new if mask is None else new.where(mask[:, i], state)
            logits.append(out)
        state.label = labels[:, length]
        return torch.stack(logits, dim=1), state

    def sequence_logits(
        self, x_seq: torch.Tensor, y_seq: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``[T, L, n_way]``: step t sees ``x_t`` and the one-hot ``y_{t-1}`` (zeros at step 0)."""
        self.check(x_seq, y_seq)
        return self.run_sequence(x_seq, y_seq, mask)[0]

    # -- the learner protocol ------------------------------------------------------------------

    def check(self, x_support: torch.Tensor, y_support: torch.Tensor) -> None:
        """Shapes as :class:`MetaLearner` checks them, and labels in ``0..n_way-1``."""
        super().check(x_support, y_support)
        if y_support.numel() and (int(y_support.min()) < 0 or int(y_support.max()) >= self.n_way):
            raise ShapeError(
                f"MANN was built for n_way={self.n_way}: labels must lie in 0..{self.n_way - 1}, "
                f"got {int(y_support.min())}..{int(y_support.max())}"
            )

    def adapt_checked(
        self,
        x_support: torch.Tensor,
        y_support: torch.Tensor,
        support_mask: torch.Tensor | None,
        options: AdaptOptions,
    ) -> AdaptedMANN:
        """Read the support sequence ``[T, S, *x]`` (in its order) into memory; MANN takes no adapt options."""
        return AdaptedMANN(self, self.run_sequence(x_support, y_support, support_mask)[1])

    def query_logits(self, state: MemoryState, x_query: torch.Tensor) -> torch.Tensor:
        """Logits ``[T, Q, n_way]``: each query is one more step from ``state``, independently of the others."""
        t, q = x_query.shape[:2]
        if state.h.shape[0] != t:
            raise ShapeError(f"the memory holds {state.h.shape[0]} tasks but x_query is {describe(x_query)}")
        features = self.model(x_query.reshape(t * q, *x_query.shape[2:]))
        logits, _ = self.step(features, state.repeat(q))
        return logits.view(t, q, self.n_way)

    def meta_loss(self, episode: Episode) -> torch.Tensor:
        """Mean cross-entropy over every valid support step and query, per task, then over tasks."""
        support_logits, state = self.run_sequence(episode.x_support, episode.y_support, episode.support_mask)
        logits = torch.cat([support_logits, self.query_logits(state, episode.x_query)], dim=1)
        targets = torch.cat([episode.y_support, episode.y_query], dim=1)
        _, _, mask = episode.all_examples()
        return per_task_loss(self.loss, logits, targets, mask).mean()


class AdaptedMANN:
    """A MANN after reading T support sequences; ``predict(x_query [T, Q, *x]) -> logits [T, Q, n_way]``."""

    def __init__(self, learner: MANN, state: MemoryState) -> None:
        self.learner = learner
        self.state = state

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.learner.query_logits(self.state, x)
