"""trainlab: evaluate deep-learning training strategies from one study file.

The flow runs one way: ``spec`` -> ``search`` -> ``executors`` -> ``engine`` ->
``store`` -> ``report``.
"""

__version__ = "0.1.0"
