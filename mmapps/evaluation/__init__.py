"""Turning model outputs into per-sample prediction records, metrics and prediction files."""

from mmapps.evaluation.records import PredictionRecord, gather_records, predict_records

__all__ = ["PredictionRecord", "gather_records", "predict_records"]
