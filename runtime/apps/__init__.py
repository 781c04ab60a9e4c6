"""Device apps behind ``python -m runtime``: one module per command (predict, bench, check, sense, listen)."""
