"""Data into a dataset: DICOM import, reader labels, model predictions."""
