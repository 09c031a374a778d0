"""The reliability suite's figures (tests/reliability/conftest.py `figure`), printed at the end
of the run by tests/conftest.py, from every process of it."""

FIGURES: list[str] = []
