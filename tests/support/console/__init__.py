"""Graphs and helpers for the web console's browser tests."""
