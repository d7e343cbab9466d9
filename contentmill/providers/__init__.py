"""Providers: one protocol per modality (base.py) and the implementations beside it."""
