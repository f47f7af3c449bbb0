"""Training objectives: supervised (`supervised`), self-supervised
(`self_supervised`) and the lesion-fidelity term (`fidelity`)."""
