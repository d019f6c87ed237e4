"""Makes plain ``pytest`` work from the repository root.

pytest puts the directory of a root-level ``conftest.py`` on ``sys.path`` (its default
``prepend`` import mode), so ``tests/`` can import ``tests.support`` and the other support
modules (``tests/remediator_support.py``, ``tests/dashboard_support.py``) the same way
whether it runs as ``pytest`` or ``python -m pytest``. No test module imports another.
"""
