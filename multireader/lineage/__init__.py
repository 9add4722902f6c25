"""Audit log, label history, frozen training sets, the audit report."""
