"""The trainer, meta-training, evaluation with confidence intervals, checkpoints, run folders and logging."""

from metamap.training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from metamap.training.evaluate import Score, evaluate_learner
from metamap.training.loop import TrainConfig, meta_train
from metamap.training.run_folder import RunFolder, claim_run_folder
from metamap.training.trainer import Trainer, TrainResult

__all__ = [
    "Checkpoint",
    "RunFolder",
    "Score",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "claim_run_folder",
    "evaluate_learner",
    "latest_checkpoint",
    "load_checkpoint",
    "meta_train",
    "save_checkpoint",
]
