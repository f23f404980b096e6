"""JSON Schemas of the command line's JSON output (versioned)."""
