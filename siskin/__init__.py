"""Siskin: progressive delivery for Kubernetes with statistically judged canaries."""

__version__ = "0.1.0"
