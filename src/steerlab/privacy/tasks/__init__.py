"""What a user personalizes: the task protocol (base.py, protocols.py, scorers.py), the built-in recipes registered
in registry.py (point robot, digits, Meta-World reach, panda reach), a user's own policy and demonstrations
(byo.py), and what only these recipes use: their small environments (envs/) and PPO (ppo.py)."""
