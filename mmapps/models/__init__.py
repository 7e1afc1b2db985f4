"""Encoders, fusions, heads and the model builder."""
