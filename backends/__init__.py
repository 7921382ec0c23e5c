"""Backends: turn a subgraph's linalg into a native artifact for one device kind."""
