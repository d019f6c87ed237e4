"""A BrainyCP panel simulator that follows the mail API contract."""
