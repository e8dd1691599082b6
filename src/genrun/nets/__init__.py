"""Plain nn.Module architectures: no Lightning, no config objects."""
