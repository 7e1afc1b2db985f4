"""Reports: Markdown + PNG for people, JSON for machines; domains add sections."""

from mmapps.report.model import ReportContext, Section, markdown_table
from mmapps.report.writer import write_report

__all__ = ["ReportContext", "Section", "markdown_table", "write_report"]
