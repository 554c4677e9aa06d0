"""Fine-tuning one model: loading it (``model``), the loop (``loop``: ``fine_tune``, ``evaluate``), the
optimiser (``optim``), the prepared inputs (``prepared``), every score and the failed-run rule (``metrics``), experiment
tracking (``tracking``) and the replica folder's format (``replica_folder``)."""
