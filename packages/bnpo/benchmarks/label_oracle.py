"""Are the ground-truth option labels what maximum likelihood finds? An oracle option model trained *supervised* on
the labels against unsupervised fits, on the same data (issue 16: BabyAI/Taxi fits recover labels poorly).

    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/label_oracle.py bnpo/BabyAI-GoToObj-v0 \\
        --epochs 100
    OMP_NUM_THREADS=1 uv run --no-sync python packages/bnpo/benchmarks/label_oracle.py bnpo/TaxiHidden-v0 \\
        --epochs 150 --k 4

The oracle has one option per label: its policies and terminations are fitted to the labelled segments (a switch
wherever the label changes; 300 full-batch Adam steps), eta is the labels' frequency at switches. Printed: the
oracle's exact marginal log-likelihood per step (forward algorithm) and the Viterbi accuracy of its own labels, then
the unsupervised fits' log-likelihood and accuracy (exact objective, padding, batch 64, entropy decay 0.99). An
oracle that decodes its labels well but has a lower likelihood than the fits means the data are explained better by
other segments; an oracle that cannot decode its own labels means they are not identifiable from the observations.
For BabyAI levels the accuracy with the "go next to <kind>" labels merged into one is printed too.
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym
import torch

import bnpo
from bnpo import hmm, metrics
from bnpo.fit import FitConfig, evaluate, fit
from bnpo.model import OptionModel, OptionModelConfig, mask_hmm


def oracle(data: bnpo.Dataset, steps: int = 300) -> dict:
    """Fit the label-supervised option model on ``data.padded()`` and score it (see the module docstring)."""
    padded = data.padded()
    states, actions, mask, truth = padded["states"], padded["actions"], padded["mask"], padded["options"]
    labels = sorted(set(truth[mask].tolist()))
    index = {label: i for i, label in enumerate(labels)}
    h = truth.clone().apply_(lambda v: index.get(v, 0))
    switch = torch.ones_like(mask)
    switch[:, 1:] = h[:, 1:] != h[:, :-1]
    k = len(labels)
    model = OptionModel(OptionModelConfig(obs_dim=data.obs_dim, n_actions=data.n_actions, n_options=k, seed=0))
    params = list(model.policy.parameters()) + list(model.termination.parameters())
    optimizer = torch.optim.Adam(params, lr=1e-2)
    weight = mask.float()
    for _ in range(steps):
        log_pi = model.log_pi(states, actions).gather(-1, h.unsqueeze(-1))[..., 0]
        log_beta, log_not_beta = model.log_beta(states)
        prev = h[:, :-1].unsqueeze(-1)
        term = torch.where(
            switch[:, 1:], log_beta[:, 1:].gather(-1, prev)[..., 0], log_not_beta[:, 1:].gather(-1, prev)[..., 0]
        )
        loss = -((log_pi * weight).sum() + (term * weight[:, 1:]).sum()) / weight.sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    counts = torch.bincount(h[switch & mask], minlength=k).double() + 1e-3
    log_eta = (counts / counts.sum()).log()
    with torch.no_grad():
        log_pi = model.log_pi(states, actions).double()
        log_beta, log_not_beta = (x.double() for x in model.log_beta(states))
        log_pi, log_beta, log_not_beta = mask_hmm(log_pi, log_beta, log_not_beta, mask)
        loglik = hmm.forward_log_likelihood(log_pi, log_beta, log_eta, log_not_beta)
        decoded, _ = hmm.viterbi(log_pi, log_beta, log_eta, log_not_beta)
    return {
        "labels": labels,
        "oracle_loglik_per_step": round(float(loglik.sum() / mask.sum()), 4),
        "oracle_viterbi_accuracy": round(metrics.hungarian_accuracy(decoded[mask], truth[mask])[0], 4),
        "decoded": decoded,
    }


def merged_goto(truth: torch.Tensor) -> torch.Tensor:
    """BabyAI labels with every "GoNextTo:<kind>" (indices 0-4 of ``bnpo.envs.babyai.SUBGOALS``) merged into 0."""
    return torch.where(truth <= 4, torch.zeros_like(truth), truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("env_id")
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--k", type=int, default=None, help="fixed K for the unsupervised fit (default: both)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = gym.make(args.env_id)
    data = bnpo.collect(env, bnpo.make_expert(env, seed=0), args.episodes, seed=0, env_id=args.env_id)
    padded = data.padded()
    truth, mask = padded["options"], padded["mask"]
    babyai = "BabyAI" in args.env_id
    result = oracle(data)
    decoded = result.pop("decoded")
    if babyai:
        merged = merged_goto(truth)[mask]
        result["oracle_viterbi_accuracy_goto_merged"] = round(metrics.hungarian_accuracy(decoded[mask], merged)[0], 4)
    print(json.dumps({"env": args.env_id, **result}), flush=True)
    fits = [{"nonparametric": False, "k": args.k}] if args.k else [{"nonparametric": True}]
    for extra in fits:
        config = FitConfig(
            epochs=args.epochs, batch_size=64, objective="exact", padding=True, entropy_decay=0.99, seed=0, **extra
        )
        model = fit(data, config).model
        scores = evaluate(model, padded)
        row = {
            "fit": extra,
            "K": scores["K"],
            "used_options": scores["used_options"],
            "loglik_per_step": round(scores["loglik_per_step"], 4),
            "accuracy": round(scores["accuracy"], 4),
            "boundary_f1": round(scores["boundary_f1"], 4),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
