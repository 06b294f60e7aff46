"""Flying the controller outside training: the Crazyflie state as the firmware reports it, motor
packets and the action-to-PWM mapping, safety limits, robot configs, the simulated take-off /
policy / landing flight (fly_real's sim backend), and export of the spiking actor to C (firmware)
and NIR. May import: ``common``, ``sim``, ``env``, ``snn``; never ``learning``."""
