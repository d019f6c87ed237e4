"""The remediator's HTTP routes, one module per concern; :mod:`remediator.app` mounts them.

``webhook`` receives Alertmanager's notifications, ``operator`` is the JSON API people
and the console use, ``health`` answers probes and scrapes, ``status_page`` is ``/``.
"""
