"""trainlab's version, in a module of its own: the modules that record or print it read it here,
below the package's face (``trainlab/__init__.py``), which sits above everything it exports."""

__version__ = "0.1.0"
