"""``tune()`` and its worker processes (``tune``), one worker's loop over the grid (``worker``), and the
objective that turns a trial into a fine-tuning run (``objective``)."""
