"""One module per arm kind; see models.registry for the kind → class map."""
