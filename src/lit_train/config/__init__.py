"""What a command line means, checked before any compute: composition, target specs, validation.

Imports Hydra and OmegaConf only, never torch or Lightning, so a bad command
fails in well under a second.
"""
