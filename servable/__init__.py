"""What a servable model is and how one is built, below both the service and training.

A model section's settings (``servable.config``), the label sets (``servable.labels``), a trained model file's
contract applied to settings (``servable.trained``), the served model and its description (``servable.served``) and
building one from its settings (``servable.build``). The service builds models here when it starts or loads a new
version; ``unirep train`` and ``unirep evaluate`` build the file they wrote here, exactly as the service will serve it.
Modality-specific behaviour is never named here: it is whatever the adapter declares.
"""
