"""The trainer, its runtime (devices, precision, DDP), schedule, callbacks and checkpoints."""
