"""keyring backends the tests choose explicitly with PYTHON_KEYRING_BACKEND (tests/ is on PYTHONPATH)."""
