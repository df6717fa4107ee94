"""The performance model: network, TorchScript export and runtime, pretraining, evaluation."""
