"""The retraining loop at image scale (EDM, OT-CFM, DDPM); needs the torch extra."""
