"""Files -> validated corpus -> batches.

``split_files`` finds which file (or saved ``DatasetDict`` split) is train, dev and test; ``text_formats`` reads
TSV, CSV and JSON Lines, ``arrow_formats`` Parquet and saved splits; ``records`` holds the ``Example`` record
and the value checks every format shares; ``corpus`` the corpus-level rules (labels, fingerprint, tokenising);
``batches`` the tensors a training step takes.
"""
