"""``Predictor`` (one model or a seed ensemble, ``predictor``) and prediction over files (``files``)."""
