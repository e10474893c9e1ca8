"""The dashboard API and its web page."""
