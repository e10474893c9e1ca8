"""Example manifests shipped as package data (used by the demo)."""
