"""Metric providers and the statistical judge: numbers in, verdicts out, no Kubernetes."""
