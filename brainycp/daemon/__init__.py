"""The daemons' HTTP kit: one server set-up for the exporter and the remediator (listener,
TLS and basic auth from the web config, reload, signals, flags, exit codes, logging,
HTML pages)."""
