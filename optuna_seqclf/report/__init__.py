"""What a user reads about a study: report.md and the ``studies`` listing (``markdown``), figures (``plots``),
RST tables (``tables``), the expected best score against the number of trials (``budget``) and
optuna-dashboard (``dashboard``)."""
