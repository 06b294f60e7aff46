"""Shared foundations: typed configs loaded from YAML (and where the package's files live), the
field layouts of every exchanged array (state, observation, action), and input checks whose errors
name what they got. May import: nothing else from the package."""
