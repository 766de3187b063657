"""Synthetic workspaces: the demo and field generators, their renderers and the presets that build either."""
