"""Cross-check of snn_drone.core.snn.neurobench_metrics against the `neurobench` package itself
(PyPI 2.3.0, the tool the paper measured with). neurobench is not a project dependency (it pulls
tonic, librosa, numba and a CUDA torchaudio wheel), so this test runs only where it is installed.

The same weights go into an snntorch network (Linear + snntorch.Leaky, reset "subtract", learned
beta and threshold): NeuroBench counts per sample = per whole sequence, ours per inference step, so
its numbers are ours times T.
"""
import pytest
import torch
from torch import nn

neurobench = pytest.importorskip("neurobench")
snn = pytest.importorskip("snntorch")

from neurobench.benchmarks import Benchmark  # noqa: E402
from neurobench.metrics.static import ParameterCount  # noqa: E402
from neurobench.metrics.workload import (ActivationSparsity, ActivationSparsityByLayer,  # noqa: E402
                                         SynapticOperations)
from neurobench.models import SNNTorchModel  # noqa: E402
from snntorch import surrogate  # noqa: E402

from snn_drone.core.snn.neurobench_metrics import default_observations, measure_actor  # noqa: E402
from snn_drone.core.snn.spiking_actor import SpikingActor, SpikingActorConfig  # noqa: E402


class SnnTorchCopy(nn.Module):
    """The actor's weights in snntorch modules, stepped by NeuroBench's SNNTorchModel."""

    def __init__(self, actor: SpikingActor):
        super().__init__()
        self.fc = nn.ModuleList()
        self.lif = nn.ModuleList()
        for fc, lif in zip(actor.fc, actor.lif):
            lin = nn.Linear(fc.in_features, fc.out_features)
            lin.load_state_dict(fc.state_dict())
            self.fc.append(lin)
            self.lif.append(snn.Leaky(beta=lif.beta.detach().clamp(0, 1).clone(),
                                      threshold=lif.threshold.detach().clone(), learn_beta=True,
                                      learn_threshold=True, reset_mechanism="subtract",
                                      spike_grad=surrogate.fast_sigmoid(slope=2.0), init_hidden=True))
        self.readout = nn.Linear(actor.readout.in_features, actor.readout.out_features)
        self.readout.load_state_dict(actor.readout.state_dict())

    def forward(self, x):
        for fc, lif in zip(self.fc, self.lif):
            x = lif(fc(x))
        return torch.tanh(self.readout(x)), None


def test_our_counts_equal_neurobench_on_the_same_weights_and_observations():
    steps, batch = 40, 6
    actor = SpikingActor(SpikingActorConfig(seed=4))
    obs = default_observations(steps, batch, seed=9)                  # [T, B, 18]
    ours = measure_actor(actor, obs)

    data = torch.utils.data.TensorDataset(obs.transpose(0, 1), torch.zeros(batch))  # [B, T, 18]
    loader = torch.utils.data.DataLoader(data, batch_size=batch)
    model = SNNTorchModel(SnnTorchCopy(actor))
    bench = Benchmark(model, loader, [], [], [[ParameterCount],
                                             [ActivationSparsity, ActivationSparsityByLayer,
                                              SynapticOperations]])
    nb = bench.run(quiet=True)

    assert nb["ActivationSparsity"] == pytest.approx(ours.activation_sparsity, abs=1e-12)
    assert sorted(nb["ActivationSparsityByLayer"].values()) == pytest.approx(
        sorted(ours.activation_sparsity_by_layer), abs=1e-12)
    ops = nb["SynapticOperations"]
    assert ops["Dense"] == pytest.approx(ours.dense_synops * steps, rel=1e-12)
    assert ops["Effective_MACs"] == pytest.approx(ours.effective_macs * steps, rel=1e-12)
    assert ops["Effective_ACs"] == pytest.approx(ours.effective_acs * steps, rel=1e-12)
    assert nb["ParameterCount"] == ours.parameter_count
