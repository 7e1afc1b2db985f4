"""Samples, batches, collate, splits and the per-sample failure policy."""

from mmapps.data.issues import IssueLog, SampleIssue
from mmapps.data.sample import Batch, ModalityBatch, Sample, collate_samples
from mmapps.data.splits import DatasetSplits

__all__ = ["Batch", "DatasetSplits", "IssueLog", "ModalityBatch", "Sample", "SampleIssue", "collate_samples"]
