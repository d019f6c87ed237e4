"""The remediator's settings: its ``remediator`` section of the config file, by concern."""
