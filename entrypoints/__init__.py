"""Entry points above every package: the ``r2ec`` command line (nothing below imports this)."""
