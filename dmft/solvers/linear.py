"""Placeholder: being written (depth-0 Marchenko-Pastur curves)."""
