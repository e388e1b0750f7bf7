"""Runtime: state, program extraction and execution."""
