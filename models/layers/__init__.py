"""Building blocks of the arms (TensorFlow imported lazily by the code that builds them)."""
