"""The STanHop-Net normalizer study: train each normalizer, then forecast error, outliers, W8A8."""
