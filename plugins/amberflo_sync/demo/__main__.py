"""``python -m amberflo_sync.demo`` is ``python -m amberflo_sync.demo.generate``."""

# Airflow's plugin loader imports every ``.py`` under ``plugins/`` as a top-level module named after
# the file, so this file can also be loaded as a module called ``__main__``: only run the command
# when Python runs it for ``-m amberflo_sync.demo``.
if __name__ == "__main__" and (__spec__ is not None and __spec__.name == "amberflo_sync.demo.__main__"):
    import sys

    from amberflo_sync.demo.generate import main

    sys.exit(main())
