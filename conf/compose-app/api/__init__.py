"""JSON endpoints, one module per script handler target (api.clock, api.echo)."""
