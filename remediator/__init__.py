"""Alertmanager webhook receiver that remediates BrainyCP mail problems."""
