"""Subcommands of the `snn-drone` CLI, one module each (see snn_drone.cli.COMMANDS)."""
