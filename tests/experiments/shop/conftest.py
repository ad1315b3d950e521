from tests.support.serving import serving_inline  # noqa: F401  (fixture)
