"""The learning path: train-after-take (finetuning on a take) and model versions."""
