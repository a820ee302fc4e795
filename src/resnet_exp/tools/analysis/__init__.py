"""Measurements on trained or freshly initialised nets: layer responses, lesions, gradients, sensitivity,
and the first steps of training (start).

`resnet-exp-analyze` (analysis/cli.py) runs them on run dirs; `trainer.log_grad_norms=true` logs the
per-layer gradient norms during training.
"""
