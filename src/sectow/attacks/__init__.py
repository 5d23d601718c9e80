"""How an attack becomes a query and a picture: compositions of persona, framing, demand, encoding and
picture (strategies.py), the attacker's task text and output format (queries.py), word tiles (tiles.py)
and FigStep typography (typography.py)."""
