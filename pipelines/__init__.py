"""Stage wiring: one thin module per DVC stage, plus the ``genfoundry`` CLI. Logic lives in ``components``."""
