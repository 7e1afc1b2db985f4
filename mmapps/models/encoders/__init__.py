"""Core encoders; importing this package registers them in `mmapps.registry.ENCODERS`."""

from mmapps.models.encoders import audio, image, points, signal, tabular, text, video  # noqa: F401
