"""Core fusions; importing this package registers them in `mmapps.registry.FUSIONS`."""

from mmapps.models.fusions import attention, concat, gated, late, lmf  # noqa: F401
