"""Training: the per-worker loop (Ray Train or in-process) and the driver that launches it."""
