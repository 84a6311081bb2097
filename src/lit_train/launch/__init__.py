"""From the command line to one job in each process: the entry point, DDP ranks, torchrun workers, resolvers.

Imports no torch at module level: the CLI imports it before the config is checked.
"""
