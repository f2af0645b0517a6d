"""Data: CT phantoms and physics, the simulated low-dose CT data set, real DICOM, the two-vendor MRI simulator,
synthetic segmentation scenes and image degradations."""
