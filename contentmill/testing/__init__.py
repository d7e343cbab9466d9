"""Test support that ships with the package: a fake OpenAI-compatible upstream server and a harness for it.

Nothing is imported here, so ``python -m contentmill.testing.upstream`` stays light.
"""
