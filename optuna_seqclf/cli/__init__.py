"""The command line: commands (``commands``), the options they share (``options``), ``--config`` files
(``config_files``), the ``predict`` command (``predict_command``) and the terminal (``console``).

``main`` is the console script's entry point (``optuna-seqclf = optuna_seqclf.cli:main``).
"""

from optuna_seqclf.cli.commands import cli, main

__all__ = ["cli", "main"]
