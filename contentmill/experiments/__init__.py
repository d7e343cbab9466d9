"""A/B experiments over prompt template versions (or models), and the model comparison tool.

Traffic is split deterministically by request hash; per-arm tokens and cost come from the ledger's calls, quality
from ``quality_scores``; arms are compared with Welch's t-test; a promoted winner pins its template version.
"""

from contentmill.experiments.run import Trial, TrialRequest, run_trials
from contentmill.experiments.split import assign, request_hash
from contentmill.experiments.stats import Welch, welch
from contentmill.experiments.status import ArmStats, Status, status
from contentmill.experiments.store import (
    Arm,
    Experiment,
    ExperimentStore,
    parse_arms,
    parse_split,
    promoted_library,
)

__all__ = ["Arm", "ArmStats", "Experiment", "ExperimentStore", "Status", "Trial", "TrialRequest", "Welch", "assign",
           "parse_arms", "parse_split", "promoted_library", "request_hash", "run_trials", "status", "welch"]
