"""The hover task as reinforcement learning sees it: the 18-value observation and the 146-value
privileged one, the reward (Eq. 8) and its curriculum, initial states and termination
(``task``), the batched autoresetting environment and the gymnasium envs. May import:
``common``, ``sim``."""
