"""Training and evaluation of ICPD-Net: the training loop and its saved state, evaluation over
episodes with any backend (``episodes``), metrics, eager prediction, multi-GPU helpers."""
