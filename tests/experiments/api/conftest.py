from tests.support.serving import serving_inline, serving_manual  # noqa: F401  (fixtures)
