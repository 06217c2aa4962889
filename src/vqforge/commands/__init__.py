"""Subcommands. Each module defines ``add_parser(subparsers)`` which sets ``func`` to its runner.

Command modules import heavy code inside their runner so that ``vqforge --help`` stays fast.
"""

from . import bench, complete, convert, demo, encode, evaluate, models, pull, push, reconstruct, sample, serve, shard, train

ALL_COMMANDS = [demo, models, pull, push, convert, reconstruct, shard, train, encode, sample, complete, evaluate, serve, bench]
