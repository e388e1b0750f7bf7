"""Queue ops: stateful host ops over queues kept in the runtime state (issue 6)."""
