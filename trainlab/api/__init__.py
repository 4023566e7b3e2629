"""trainlab's Python API: a study loaded or given as tables, checked, run into a store, and its
results as data (pandas frames, matplotlib figures, the report's JSON, the HTML page).

The package ``trainlab`` exports the supported names (``trainlab.Study``, ``trainlab.open_store``,
...); they live here: ``study`` (:class:`~trainlab.api.study.Study`, its check), ``run`` (the
options and the one function that runs a study), ``progress`` (what a run shows as it trains),
``result`` (a study's results as data) and ``stores`` (a store's studies). ``trainlab``'s command
line is built on the same functions (``run``, ``check``, ``status``, ``report`` and ``plot`` call
them), so the command and the API give the same results and the same reports. This face imports
nothing, so that the command line loads only the parts a command uses. docs/PYTHON.md shows the
API in use.
"""
