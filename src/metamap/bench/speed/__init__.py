"""The ``speed`` benchmark: meta-training throughput of second-order MAML.

What is measured: tasks per second of *full meta-training steps* on the
sinusoid model of Finn et al. 2017 (``MLP(1, [40, 40], 1)``, ReLU), with
5-shot support sets, 10 query points per task, 25 tasks per meta-batch,
inner SGD at lr 0.01 with second-order gradients, and Adam (lr 1e-3) on the
meta-parameters. One step = inner adaptation of every task + query loss +
backward + Adam step, on pre-sampled episodes (one fixed seed, identical for
every method). Two settings: 1 and 5 inner steps.

Methods (all compute the same meta-gradient; checked at start, see
:func:`metamap.bench.speed.agreement.gradient_agreement`):

- ``metamap_vmap``: the same learner on the same layers held in a plain
  ``nn.Sequential``, so it takes the generic ``vmap(functional_call)`` path
  instead of ``MLP.batched_forward``; not a peer, it measures what the
  batched forward saves.
- ``metamap``: ``make_learner("maml", ...)`` + ``meta_backward`` (vmap over
  tasks, one batched ``autograd.grad`` per inner step).
- ``loop``: the plain reference, per task ``functional_call`` +
  ``torch.autograd.grad(create_graph=True)``.
- ``higher``: ``higher.innerloop_ctx(model, SGD, copy_initial_weights=False)``
  per task, ``diffopt.step(loss)``, query loss backward inside the context
  (the library's MAML example).
- ``torchopt_metasgd``: torchopt's OOP API, ``torchopt.MetaSGD`` stepping the
  module per task, ``extract_state_dict``/``recover_state_dict`` between tasks
  (torchopt's few-shot MAML example).
- ``torchopt_vmap``: torchopt's functional API, ``torchopt.sgd`` +
  ``torchopt.apply_updates`` with ``torch.func.grad``, vmapped over the tasks
  (torchopt's functorch MAML example); this is the strongest peer.

Timing: ``torch.set_num_threads`` fixed (default 1: this model is far too
small for intra-op threads to help, and one thread makes every method's
number comparable and repeatable). Every method is warmed up and calibrated
to run about ``target_s`` seconds per measurement; then in each round every
(method, inner steps) pair is measured once, in an order that rotates from
round to round; tasks/s is reported as median, min and max over the rounds.

Memory: the peak of tensor bytes allocated during one meta-step, above the
level at its start, from the torch profiler's allocation events
(``profile_memory=True``, see :func:`metamap.bench.speed.memory.tensor_peak_mib`),
after the timing. The process peak RSS (``ru_maxrss``) was tried first, in a
fresh subprocess per method: every method read the same value with zero
increase over the level before its first meta-step, because the process
high-water mark is set while torch is imported and a meta-step of this model
needs only a few MiB. It is therefore not reported.

Modules: :mod:`~metamap.bench.speed.inputs` (settings, episodes, weights),
:mod:`~metamap.bench.speed.methods` (the implementations timed),
:mod:`~metamap.bench.speed.peers` (which peer libraries load),
:mod:`~metamap.bench.speed.agreement` (same meta-gradient?),
:mod:`~metamap.bench.speed.timing` and :mod:`~metamap.bench.speed.memory`
(the measurements), :mod:`~metamap.bench.speed.summary` (results, headline,
JSON record), :mod:`~metamap.bench.speed.plots` (table and PNG) and
:mod:`~metamap.bench.speed.benchmark` (the run).

Run as ``metamap bench speed [--quick] --json PATH`` or
``python -m metamap.bench.speed [--quick] --json PATH``.
"""

from metamap.bench.speed.benchmark import main, run

__all__ = ["main", "run"]
