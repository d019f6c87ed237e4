"""The config file both daemons read: the YAML guard, the small value parsers, the shared
panel settings and the loader. Each daemon's own section is validated by that daemon
(``exporter/settings.py``, ``remediator/settings/``), which passes it to the loader."""
