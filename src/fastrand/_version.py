"""The package version: the one source read by setup.py (without importing the package) and by
``fastrand.__version__``."""

__version__ = "0.2.0"
