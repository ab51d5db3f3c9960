"""File formats and their checks: the model dir, the matcher signature, support caches and
TensorRT engine sidecars (:mod:`.formats` is the common version/format rule). Below the model: a
format needs numpy and the standard library, never torch."""
