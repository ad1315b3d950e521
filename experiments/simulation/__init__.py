"""Simulated shoppers: a hidden preference model (``world``) and an HTTP client loop (``runner``)."""
