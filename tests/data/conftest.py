"""Fixtures for tests/data; helpers are in data_support.py, imported by that unique name."""

from data_support import conllu_file, sentiment_files, session_cache, shared_data

__all__ = ["conllu_file", "sentiment_files", "session_cache", "shared_data"]
