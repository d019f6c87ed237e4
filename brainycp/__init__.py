"""brainycp-mail: shared code for the exporter and the remediator."""

__version__ = "0.1.0"
