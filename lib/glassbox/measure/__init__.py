"""Measurements: feature extraction, representation similarity and its chance levels, clustering, image metrics,
ROC analysis, shared statistics."""
