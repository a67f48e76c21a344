"""Diffing methods: each subpackage is one method (its parameters, computation, cache and tools)."""
