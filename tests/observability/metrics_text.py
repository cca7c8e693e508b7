"""Reading samples out of Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of the sample name{labels...} (labels may be a subset); 0 when absent."""
    wanted = dict(labels or {})
    total = 0.0
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and wanted.items() <= found.labels.items():
                total += found.value
    return total
