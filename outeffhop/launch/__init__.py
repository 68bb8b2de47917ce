"""How processes start: config files and presets, huge pages, quiet logs, the scripts' entry."""
