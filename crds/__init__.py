"""CustomResourceDefinitions shipped as package data."""
