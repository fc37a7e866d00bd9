"""Meta-training loop, evaluation with confidence intervals, checkpoints and logging."""

from metamap.training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint
from metamap.training.evaluate import Score, evaluate_learner
from metamap.training.loop import TrainConfig, TrainResult, meta_train

__all__ = [
    "Checkpoint", "Score", "TrainConfig", "TrainResult", "evaluate_learner", "latest_checkpoint",
    "load_checkpoint", "meta_train", "save_checkpoint",
]
