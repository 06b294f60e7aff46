"""The functional core: everything the package computes. Plain Python + torch: it never imports
rclpy or the command line, and does no I/O beyond files it is asked to read or write.

Subpackages, lowest first; each imports only from those below it (test/test_layering.py enforces
it, with the subpackage names in ``LAYERS``):

0. ``common``   - config loading, the array layouts (state, observation, action), input checks.
1. ``sim``      - the quadrotor: model presets, torch dynamics, the pybullet world, the geometric
                  controller.
2. ``env``      - the hover task (observation, reward Eq. 8, curriculum, initial states), the
                  batched environment and the gymnasium envs.
3. ``snn``      - the spiking actor: LIF neurons and kernels, the surrogate gradient (Eq. 4-5), slope
                  schedules (Eq. 7), gradient analysis (Fig. 1), NeuroBench metrics (Table 2).
4. ``learning`` - TD3BC + JSRL (Algorithm 1): networks, sequence replay, learner, hand-over
                  schedule, rollouts and evaluation, seeds, the training loop, checkpoints, plots.
4. ``deploy``   - flying a real or simulated Crazyflie: state estimation, motor packets and mapping,
                  safety, robot config, the simulated flight, C and NIR export.

``learning`` and ``deploy`` share a layer and never import each other.
"""

LAYERS = (("common",), ("sim",), ("env",), ("snn",), ("learning", "deploy"))
