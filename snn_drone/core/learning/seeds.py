"""Which seed draws which initial states: one definition, so no evaluation reuses a training start.

Every set of initial states is ``env.reset(seed=...)`` (or the training env's own stream), and the
families below never overlap for run seeds 0 .. 9,999 and up to 10,000 evaluations per run:

- training rollouts: the run seed itself (``TrainConfig.seed``), one stream for the whole run;
- training evaluations (progress, the adaptive slope of Eq. 7): fresh starts every time,
  ``training_eval_seed(run_seed, i)`` for the i-th evaluation of the run;
- validation (the choice of ``actor_best.pt``): one fixed set per run, ``validation_seed(run_seed)``;
- test (every reported return: ``snn-drone eval``, docs/RESULTS.md): ``TEST_SEED`` and up, never
  used by a training run.
"""
from __future__ import annotations

TRAINING_EVAL_BASE = 10_000_000
VALIDATION_BASE = 200_000_000
TEST_SEED = 900_000_000
"""First test seed: `snn-drone eval`'s default. Headline figures use TEST_SEED, TEST_SEED + 1, ..."""
MAX_RUN_SEED = 9_999
MAX_EVALUATIONS = 10_000


def _check_run_seed(run_seed: int) -> int:
    if not 0 <= run_seed <= MAX_RUN_SEED:
        raise ValueError(f"run seed {run_seed} outside [0, {MAX_RUN_SEED}]: its evaluation seeds would "
                         f"overlap another family's (snn_drone/core/learning/seeds.py)")
    return run_seed


def training_eval_seed(run_seed: int, index: int) -> int:
    """Seed of the ``index``-th training evaluation of run ``run_seed`` (fresh starts each time;
    past ``MAX_EVALUATIONS`` the seeds wrap round and repeat)."""
    return TRAINING_EVAL_BASE + _check_run_seed(run_seed) * MAX_EVALUATIONS + index % MAX_EVALUATIONS


def validation_seed(run_seed: int) -> int:
    """Seed of run ``run_seed``'s fixed validation set (model selection)."""
    return VALIDATION_BASE + _check_run_seed(run_seed)


def is_training_seed(seed: int) -> bool:
    """Whether a seed belongs to a training run (rollouts, evaluations or validation): such a seed
    must not score a reported return."""
    return 0 <= seed <= MAX_RUN_SEED or TRAINING_EVAL_BASE <= seed < VALIDATION_BASE + MAX_RUN_SEED + 1
