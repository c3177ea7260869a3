"""Monte-Carlo retraining simulators (Gaussian, 2D flows and diffusion)."""
