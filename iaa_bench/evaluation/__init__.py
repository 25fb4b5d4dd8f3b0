"""Evaluation: metrics, `evaluate()`, test, inference, benchmark and leaderboard, speed."""
