"""Trusted reference solutions, one module per assignment (ground truth for the rubrics)."""
