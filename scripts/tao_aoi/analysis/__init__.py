"""Scoring and root cause: the KPI at an operating point, the metric contract, gap analysis, limiting samples, label noise and the RCA report."""
