"""SADH training on torch: label network, semantic dictionaries, image network with the margin-scalable losses,
DPSH / CSQ baselines, backbones, trainer (mixed precision, resume, DDP)."""
