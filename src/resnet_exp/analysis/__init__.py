"""Measurements on trained or freshly initialised nets: layer responses, lesions, gradients, sensitivity.

`resnet-exp-analyze` (analysis/cli.py) runs them on run dirs; `grad_norms` is also meant for the trainer.
"""

from resnet_exp.analysis.gradients import grad_norms

__all__ = ["grad_norms"]
