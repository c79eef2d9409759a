"""Shared test helpers: daemons, clients and project builders used by more than one test module."""
