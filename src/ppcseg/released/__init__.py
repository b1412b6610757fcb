"""The authors' released checkpoints: official key layouts and their conversion to the project's checkpoints."""
