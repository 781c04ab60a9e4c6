"""Datasets: each returns a ``SequenceData`` with subject- or speaker-independent splits."""

from training.data.base import SequenceData, load_task, load_task_of, TASKS

__all__ = ["SequenceData", "load_task", "load_task_of", "TASKS"]
