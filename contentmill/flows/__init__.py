"""Prefect flows, one per file; ``prefect.yaml`` deploys them from ``contentmill/flows/<name>.py``."""
