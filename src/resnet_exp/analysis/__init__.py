"""Measurements on trained or freshly initialised nets: layer responses, lesions, gradients, sensitivity.

`resnet-exp-analyze` (analysis/cli.py) runs them on run dirs; `trainer.log_grad_norms=true` logs the
per-layer gradient norms during training.
"""
