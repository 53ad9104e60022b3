"""Tools around training: inspect, draw, plot, doctor, sweep, run directories and log parsing.

Each module holds the logic as functions; :mod:`caffeish.commands.tools_cmds` wraps them as
``caffeish`` subcommands.
"""
