"""Tools that measure the runner or serve its development: the benchmark, the step profile, ...

They import the core (`resnet_exp.run`, models, data, training); the core never imports them, so
`resnet-exp` and `resnet-exp-report` run without any of this package.
"""
