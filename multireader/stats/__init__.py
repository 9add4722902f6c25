"""The statistics: pure numpy/scipy, no fiftyone, no I/O."""
