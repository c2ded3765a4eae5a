"""Sample services built with eventkit."""
