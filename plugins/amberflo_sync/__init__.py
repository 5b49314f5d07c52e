"""segment-amberflo-sync: bill Segment warehouse data into Amberflo, exactly once.

The package is importable without Airflow: the pure mapping rules (``formatting``, ``transform``),
the I/O edges (``reader``, ``state``, ``client``) and the orchestration (``events_sync``) only need
pandas, SQLAlchemy and requests. Airflow-specific code lives in ``hooks`` and in ``dags/``.
"""

__all__ = ["__version__", "MAPPING_VERSION"]

__version__ = "0.1.0"

#: Version of the row → record mapping rules. Amberflo de-duplicates only byte-identical records,
#: so any change to how a row is rendered is a breaking change and must bump this number.
MAPPING_VERSION = 1
