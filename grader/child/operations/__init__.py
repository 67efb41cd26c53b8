"""Sandbox operations beyond the built-in ones, one module per area; each registers with `grader.child.ops.operation`."""
