from tests.support.serving import serving_manual  # noqa: F401  (fixture)
