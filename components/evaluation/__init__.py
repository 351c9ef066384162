"""Evaluation metrics: pure functions for the maths, torchmetrics ``Metric`` classes where they accumulate."""
