"""Core readers that plugins reuse: each checks its input, reads, and returns ``(array, metadata)``."""
