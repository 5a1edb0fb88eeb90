"""Hand-written forward/backward kernels for the recurrences of the GRU family, on CPU and CUDA.

Each recurrence is a ``torch.autograd.Function`` whose forward runs the time loop doing only the
per-step recurrent matmul and element-wise math into preallocated buffers (no autograd nodes per
step), and whose backward is written by hand: a reverse-time loop for the recurrent part, and the
recurrent weight gradient as large matmuls over many steps (all of them, or blocks of
:data:`scaffold.CHUNK` steps whose buffers are reused and stay in cache). The input projections are
computed by the caller for every step at once, so their gradients (``W``, ``x``) are one matmul each
as well. Factors of the backward that do not depend on the incoming gradient (sigmoid/tanh
derivatives, masks) are computed vectorised over all steps or over a block, so the reverse loop is 2
to 8 ops per step. Two things measured to matter on CPU: torch's ``tanh`` costs about four sigmoids
(the kernels use ``2σ(2x) − 1``), and with glibc's default ``malloc`` every fresh ``[T, B, H]``
buffer page-faults in, so the kernels allocate few of them.

One module per recurrence family: ``reset_before`` (reset-before GRU and its gate variants,
``gru_reset_before``), ``layer_norm`` (the layer-normalised reset-after GRU, ``ln_gru``), ``minimal``
(MGU, ``mgu``), ``linear`` (the linear recurrence and minGRU, ``linear_recurrence``, ``min_gru_packed``);
``scaffold`` holds the loops and checks they share, ``policy`` when they run (:func:`kernels_enabled`,
:func:`use_kernels`, ``ZOO_KERNELS``). A kernel that no cell used (the reset-after GRU of ``nn.GRU``,
IndRNN, minGRU from two separate projections) and the time-major layout were removed; docs/benchmarks.md
names the commit that last had them.

Conventions shared by every kernel (batch first, as the cells):

- ``gi`` holds the input-side pre-activations for every step (``x W^T + b``), ``[B, T, k*H]``; blocks
  are in the order the docstring names. The loops run over time-major views of it.
- ``h0`` is ``[B, H]``; recurrent weights are ``[rows, H]`` as in ``nn.Linear`` (``h @ U^T``).
- ``mask`` (optional) is boolean ``[B, T, 1]``, true on real steps: a padding step keeps the state and
  outputs zero (``zoo.cells.base.step_mask`` builds it).
- Every function returns ``(output, h_T)``: ``output`` ``[B, T, H]``, contiguous, and the state after
  each sequence's last real step.

Each public function dispatches: the kernel when :func:`kernels_enabled` says so (CPU or CUDA,
float32 or float64, not under autocast, no ``torch.func`` transform, not being compiled or scripted),
else a plain autograd loop of the same equations (``reference=True``), which is also what the tests
hold the kernel to. The kernels' backward is not itself differentiable: for double backward
(``gradgradcheck``, some meta-learning) turn them off with ``use_kernels(False)`` or ``ZOO_KERNELS=0``.
``torch.func.functional_call`` works with them.

A ``LoopLayer`` runs one by implementing its :meth:`~zoo.cells.base.LoopLayer.kernel` hook; the layer
calls it where :func:`kernels_enabled` allows (``forward_with_gates`` keeps the step loop)::

    def kernel(self, proj, h0, mask):
        u_f, u_h = self.weight_hh.chunk(2)
        return mgu(proj, h0, u_f, None, u_h, None, mask)
"""

from __future__ import annotations

from zoo.cells.kernels.layer_norm import ln_gru
from zoo.cells.kernels.linear import (
    linear_recurrence,
    min_gru_packed,
)
from zoo.cells.kernels.minimal import mgu
from zoo.cells.kernels.policy import kernels_enabled, use_kernels
from zoo.cells.kernels.reset_before import gru_reset_before

__all__ = [
    "gru_reset_before",
    "kernels_enabled",
    "linear_recurrence",
    "ln_gru",
    "mgu",
    "min_gru_packed",
    "use_kernels",
]
