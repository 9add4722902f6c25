"""Multi-reader disagreement analysis for medical imaging, on FiftyOne.

The domain package: DICOM decoding, reader labels, and (later) agreement, consensus,
quality and lineage. It imports FiftyOne's core but nothing of the App or operators,
so scripts, operators and panels all reach the same code.
"""

__version__ = "0.1.0"
