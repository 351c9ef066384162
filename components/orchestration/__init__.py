"""Orchestration around the DVC pipeline: scheduled retraining (lock, change detection, record)."""
