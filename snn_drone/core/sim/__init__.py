"""The simulated quadrotor: Crazyflie model parameters and presets, the batched torch dynamics
(rotor lag, thrust, rigid body, RK4), the pybullet world on the same model, and the hand-written
geometric hover controller. May import: ``common``."""
