"""The spiking network: LIF neurons (Eq. 4) and their fused kernels, the fast-sigmoid surrogate
gradient with a settable slope k (Eq. 5), the spiking actor, slope schedules (fixed, interval,
adaptive Eq. 7), gradient analysis across slopes (Fig. 1) and NeuroBench metrics (Table 2). May
import: ``common``, ``sim``, ``env`` (NeuroBench flies episodes of the task)."""
