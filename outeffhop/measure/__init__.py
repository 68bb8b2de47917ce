"""Measurements that know no model: outlier statistics, attention mass, quantization, evaluation.

They reach into a model through Linen's ``capture_intermediates`` and ``intercept_methods``
with module-path regexes that the models supply (``outeffhop.models.outlier_modules``).
"""
