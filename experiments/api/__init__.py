"""The public JSON API (``/api/v1/``): thin views over ``experiments.services``."""
