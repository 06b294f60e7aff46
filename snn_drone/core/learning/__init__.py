"""Learning the controller: TD3BC + JSRL (Algorithm 1). MLP and critic networks, the sequence
replay (100-step sequences, stride 50, warm-up masks), the TD3BC learner, the jump-start hand-over
schedule, rollouts and deployed evaluation, seed families, the run config and the training loop,
atomic checkpoints and plots. May import: ``common``, ``sim``, ``env``, ``snn``; never ``deploy``."""
