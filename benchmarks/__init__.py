"""The benchmark scripts: run each as ``python benchmarks/NAME.py`` (or ``python -m benchmarks.NAME``).

Importable as a package so that the tests drive each at smoke size.
"""
