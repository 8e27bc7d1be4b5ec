"""A run: its config, data, scenario, model, strategy interface, checkpoint and record, and the loops that
train one seed (runner) or K seeds at once (group)."""
