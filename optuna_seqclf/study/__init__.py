"""An Optuna study as this tool keeps it: storage URLs and locks (``storage``), reconnecting through database
restarts (``reconnect``), the exactly-once trial queue and the stored attribute names (``queue``), what a study
records (``record``), the confirmation stage (``confirm``) and the one answer every command gives
(``selection``)."""
