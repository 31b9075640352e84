"""What the card systems share (each with its own tables): callers and their signed
requests, the two-card binding, usage records shared both ways, audit chains, outage
drills, idempotent requests, system keys and resident ID numbers."""
