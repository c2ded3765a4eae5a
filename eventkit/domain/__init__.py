"""Events and aggregates: plain Python, no I/O."""
