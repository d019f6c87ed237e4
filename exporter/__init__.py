"""Prometheus exporter for BrainyCP mail queues."""
