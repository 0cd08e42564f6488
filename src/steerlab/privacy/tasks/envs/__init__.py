"""Environments only the personalization recipes use (a point robot, digit classification, vectorized panda reach)."""
