"""Temporal consistency from engine motion: the score (``score``) and, in
the diffusion backends, flow-guided generation."""
