"""Meta-training loop, evaluation with confidence intervals, checkpoints, run folders and logging."""

from metamap.training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from metamap.training.evaluate import Score, evaluate_learner
from metamap.training.loop import TrainConfig, TrainResult, meta_train
from metamap.training.run_folder import RunFolder, claim_run_folder

__all__ = [
    "Checkpoint",
    "RunFolder",
    "Score",
    "TrainConfig",
    "TrainResult",
    "claim_run_folder",
    "evaluate_learner",
    "latest_checkpoint",
    "load_checkpoint",
    "meta_train",
    "save_checkpoint",
]
