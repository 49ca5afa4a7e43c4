"""Persistence: typed SQLAlchemy models and the async engine."""
