"""Label-shifted sequences (Santoro et al. 2016): each step shows an input and the label of the step before.

An episode's support set, read in order, is the sequence ``x_1 .. x_L`` with
labels ``y_1 .. y_L``. A sequence learner sees at step t the input ``x_t``
and the one-hot label ``y_{t-1}`` (zeros at the first step), so it must
predict ``y_t`` before being told it: the label of a step never reaches its
own step.

Families such as :class:`~metamap.tasks.NWayKShot` return supports grouped by
label (all of label 0 first); :class:`SequenceEpisodes` interleaves them at
random, giving Santoro et al.'s episodes (e.g. 5 classes x 10 instances = 50
steps, the labels of the classes drawn at random per episode by the family).
:func:`instance_index` counts how often a step's class has appeared so far,
for accuracy by instance (1st, 2nd, ... presentation of a class).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from metamap.errors import ShapeError, describe
from metamap.tasks.episode import Episode
from metamap.tasks.family import TaskFamily


def _check_labels(y_seq: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    if y_seq.dim() != 2 or y_seq.dtype != torch.int64:
        raise ShapeError(f"expected int64 class labels [tasks, steps], got {describe(y_seq)}")
    if mask is not None and (mask.dtype != torch.bool or mask.shape != y_seq.shape):
        raise ShapeError(f"expected a bool step mask {list(y_seq.shape)} like the labels, got {describe(mask)}")


def label_inputs(y_seq: torch.Tensor, n_way: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One-hot label input before each step and after the last: ``float32 [T, L + 1, n_way]``.

    Entry t is the one-hot label of the last valid step before t (zeros when
    there is none); entry L is what a step after the sequence would see.
    ``y_seq int64 [T, L]`` in ``0..n_way-1``; ``mask bool [T, L]`` (False:
    the step does not count, its label is never shown) or None.
    """
    _check_labels(y_seq, mask)
    if y_seq.numel() and (int(y_seq.min()) < 0 or int(y_seq.max()) >= n_way):
        raise ShapeError(f"labels must lie in 0..{n_way - 1}, got {int(y_seq.min())}..{int(y_seq.max())}")
    t, length = y_seq.shape
    steps = torch.arange(length, device=y_seq.device).expand(t, length)
    valid = steps if mask is None else torch.where(mask, steps, torch.full_like(steps, -1))
    last = valid.cummax(dim=1).values  # [T, L]: the last valid step up to and including t
    before = torch.cat([torch.full((t, 1), -1, device=y_seq.device, dtype=last.dtype), last], dim=1)
    one_hot = F.one_hot(y_seq, n_way).float()
    picked = one_hot.gather(1, before.clamp(min=0)[..., None].expand(-1, -1, n_way))
    return picked * (before >= 0)[..., None]


def shift_labels(y_seq: torch.Tensor, n_way: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The label input of every step, ``float32 [T, L, n_way]``: one-hot ``y_{t-1}``, zeros at step 0.

    With ``mask``, a masked step's label is skipped: the step after it sees
    the last valid label instead (see :func:`label_inputs`).
    """
    return label_inputs(y_seq, n_way, mask)[:, :-1]


def instance_index(y_seq: torch.Tensor) -> torch.Tensor:
    """``int64 [T, L]``: 1-based count of how many times step t's class has appeared up to and including t."""
    _check_labels(y_seq)
    if y_seq.numel() and int(y_seq.min()) < 0:
        raise ShapeError(f"labels must be >= 0, got {int(y_seq.min())}")
    n_classes = int(y_seq.max()) + 1 if y_seq.numel() else 1
    counts = F.one_hot(y_seq, n_classes).cumsum(dim=1)
    return counts.gather(2, y_seq[..., None]).squeeze(-1)


def accuracy_by_instance(correct: torch.Tensor, y_seq: torch.Tensor, instances: tuple[int, ...]) -> torch.Tensor:
    """Per-sequence accuracy at each chosen instance: ``float64 [T, len(instances)]`` in [0, 1].

    ``correct bool [T, L]`` (prediction right at step t), ``y_seq int64 [T, L]``.
    Entry (t, i) is the fraction of right predictions among the steps of
    sequence t that show a class for the ``instances[i]``-th time; NaN where
    the sequence has no such step.
    """
    if correct.shape != y_seq.shape:
        raise ShapeError(f"correct {describe(correct)} and labels {describe(y_seq)} must have the same shape")
    index = instance_index(y_seq)
    columns = []
    for k in instances:
        at = (index == k).double()
        columns.append((correct.double() * at).sum(1) / at.sum(1))
    return torch.stack(columns, dim=1)


def shuffled_sequences(episode: Episode, generator: torch.Generator) -> Episode:
    """``episode`` with each task's support set put in a random order (queries unchanged).

    The permutation of task t is drawn from ``generator`` (a CPU generator)
    and applied to ``x_support``, ``y_support`` and ``support_mask`` alike.
    """
    t, s = episode.y_support.shape[:2]
    order = torch.rand(t, s, generator=generator).argsort(dim=1).to(episode.x_support.device)

    def permute(value: torch.Tensor) -> torch.Tensor:
        index = order.view(t, s, *([1] * (value.dim() - 2))).expand_as(value)
        return value.gather(1, index)

    return replace(
        episode,
        x_support=permute(episode.x_support),
        y_support=permute(episode.y_support),
        support_mask=None if episode.support_mask is None else permute(episode.support_mask),
    )


@dataclass(frozen=True, eq=False)
class SequenceEpisodes:
    """A TaskFamily: ``family``'s episodes with every support set randomly interleaved.

    ``sample(n, generator)`` draws ``family.sample(n, generator)`` and then
    shuffles each support with the same generator (:func:`shuffled_sequences`),
    so the episodes depend on the generator alone.
    """

    family: TaskFamily

    @property
    def split_name(self) -> str:
        return self.family.split_name

    def split(self, name: str) -> SequenceEpisodes:
        return SequenceEpisodes(self.family.split(name))

    def sample(self, n_tasks: int, generator: torch.Generator) -> Episode:
        return shuffled_sequences(self.family.sample(n_tasks, generator), generator)
