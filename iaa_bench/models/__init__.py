"""The training model (IAAModel), its checkpoints and losses."""
