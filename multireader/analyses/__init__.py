"""Dataset-level drivers: read fields in bulk, call stats, write fields and runs."""
