"""Reusable task pieces (losses, post-processing, metrics) that domains reference lazily."""
