"""Public identifiers: a type prefix and 96 random bits. Random, not sequential, so an id says
nothing about how many messages other tenants have."""

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"
