"""DICOM and volume I/O: decoding, headers, de-identification, SEG/RTSTRUCT, the demo generator. Pure: never imports fiftyone."""
