"""Pieces every stage shares: errors, atomic file writes, output-folder guards, checkpoints, logging.

Nothing in `core` imports from the stages above it (data, policies, rl, eval, privacy, train).
"""
