import pytest

from tests.reliability.stack import stack_make


@pytest.fixture(scope="session")
def private_stack():
    """Private Postgres + Redis, migrated and seeded once per session; a fault test leaves them running."""
    stack = stack_make()
    yield stack
    stack.destroy()
