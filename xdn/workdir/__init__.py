"""A training run's folder on disk: its `TrainState` (`state`) and orbax
checkpoints (`checkpoints`). Training writes it; evaluation and inference
read it (lazily: the shipped model needs neither orbax nor optax)."""
