"""Graphs and config for the approval-authority tests (a role agent with a gated write tool)."""
