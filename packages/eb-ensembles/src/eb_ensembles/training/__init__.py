"""Training M members of any ``nn.Module`` factory: looped (:mod:`.loop`) or vectorised (:mod:`.vectorised`).

Modules: :mod:`.config` (the :class:`~.config.TrainConfig`), :mod:`.likelihood` (per-member likelihoods, task from
the targets), :mod:`.members` (streams, reports, checkpoints), :mod:`.loop`, :mod:`.vectorised`,
:mod:`.stacked_adam` (Adam on one flat buffer), :mod:`.mlp_grads` (closed-form MLP gradients),
:mod:`.generic_grads` (any module: vmap forward + one backward, recorded once with ``make_fx``) and
:mod:`.train` (:func:`~.train.train_ensemble`, the entry point).
"""
