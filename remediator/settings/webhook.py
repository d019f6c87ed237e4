"""Who may call the webhook: ``remediator.auth`` (a bearer token or a basic pair), resolved."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ConfigDict, Field, SecretStr

from brainycp.config.secrets import read_secret_file, unreadable_reason
from brainycp.config.values import Strict


class BasicAuthInput(Strict):
    """``remediator.auth.basic``: a user and where its password is."""

    username: str = Field(min_length=1)
    password_file: Path | None = None
    password_env: str | None = None


class AuthInput(Strict):
    """``remediator.auth``: exactly one of a bearer token file or a basic pair."""

    bearer_token_file: Path | None = None
    basic: BasicAuthInput | None = None


@dataclass(frozen=True)
class WebhookAuth:
    """Resolved webhook credentials; both secrets hidden from repr."""

    bearer_token: SecretStr | None = None
    basic_username: str | None = None
    basic_password: SecretStr | None = None


class AuthKeys(Strict):
    """The auth keys alone, so their errors show even when a rule is broken too."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)
    auth: AuthInput | None = None
    insecure_no_auth: bool = False


def resolve_auth(
    auth_input: AuthInput | None,
    insecure: bool,
    errors: list[str],
    warnings: list[str] | None = None,
) -> WebhookAuth | None:
    """The webhook's credentials, secrets read; None (with a line in ``errors`` unless
    ``insecure``) when there are none."""
    if auth_input is not None and insecure:
        errors.append("remediator.insecure_no_auth: set either auth or insecure_no_auth, not both")
        return None
    if auth_input is None:
        if not insecure:
            errors.append(
                "remediator.auth: the webhook needs auth (bearer_token_file or basic); "
                "insecure_no_auth: true is the only way to run without it"
            )
        return None
    a = auth_input
    if (a.bearer_token_file is None) == (a.basic is None):
        errors.append("remediator.auth: set exactly one of bearer_token_file or basic")
        return None
    if a.bearer_token_file is not None:
        try:
            token = read_secret_file(
                a.bearer_token_file, "remediator.auth.bearer_token_file", warnings
            )
            return WebhookAuth(bearer_token=SecretStr(token))
        except (OSError, ValueError) as exc:
            reason = unreadable_reason(exc)
            errors.append(f"remediator.auth.bearer_token_file: cannot read the token: {reason}")
            return None
    basic = a.basic
    assert basic is not None
    try:
        if (basic.password_file is None) == (basic.password_env is None):
            raise ValueError("set exactly one of password_file or password_env")
        if basic.password_file is not None:
            secret = read_secret_file(
                basic.password_file, "remediator.auth.basic.password_file", warnings
            )
        else:
            assert basic.password_env is not None
            secret = os.environ.get(basic.password_env, "")
            if not secret:
                raise ValueError(f"environment variable {basic.password_env} is not set")
        return WebhookAuth(basic_username=basic.username, basic_password=SecretStr(secret))
    except (OSError, ValueError) as exc:
        reason = unreadable_reason(exc)
        errors.append(f"remediator.auth.basic: {reason}")
        return None
