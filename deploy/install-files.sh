#!/bin/sh
# Install brainycp-mail's service user, config, secrets, alert rules and units with the
# owners and modes that let each reader read what it needs and no one else anything secret:
#
#   /etc/brainycp-mail/                      root:brainycp-mail 0750  both daemons enter
#   /etc/brainycp-mail/config.yml            root:brainycp-mail 0640  both daemons read
#   /etc/brainycp-mail/panel.pass            brainycp-mail      0400  the daemons only
#   /etc/brainycp-mail/webhook.token         brainycp-mail      0400  the remediator's copy
#   /etc/prometheus/brainycp-mail-webhook.token  prometheus     0400  Alertmanager's copy
#   /etc/prometheus/rules/brainycp-mail.rules.yml root 0644          Prometheus (not secret)
#   /etc/systemd/system/brainycp-mail-*.service  root 0644      run $VENV/bin/brainycp-mail-*
#
# Alertmanager (Debian's prometheus-alertmanager runs as user prometheus) gets its own
# copy of the webhook token: /etc/brainycp-mail stays closed to it, and no secret file is
# readable by a group. Existing files keep their content; owners and modes are reset.
# The alert rules are rendered with /etc/brainycp-mail/thresholds.local.yml when that
# file exists (docs/alerts.md), so running this again keeps your thresholds.
#
# Usage, as root, from the source tree, after installing the package into $VENV (README):
#   sh deploy/install-files.sh
# Environment:
#   VENV             the virtualenv the units run the daemons from (/opt/brainycp-mail/venv)
#   SERVICE_USER     the daemons' user (brainycp-mail); PROMETHEUS_USER (prometheus), whose
#                    copy of the token Alertmanager reads. Names or numeric ids.
#   CREATE_USER      yes: create SERVICE_USER as a system user when it does not exist
#                    (default yes without DESTDIR, no with it)
#   DESTDIR          install under this scratch root instead of / (e.g. to inspect or test)
#   SET_OWNERS       no: leave owners alone (modes are still set), for a DESTDIR as non-root
set -eu

DESTDIR=${DESTDIR:-}
VENV=${VENV:-/opt/brainycp-mail/venv}
SERVICE_USER=${SERVICE_USER:-brainycp-mail}
PROMETHEUS_USER=${PROMETHEUS_USER:-prometheus}
SET_OWNERS=${SET_OWNERS:-yes}
if [ -z "$DESTDIR" ]; then CREATE_USER=${CREATE_USER:-yes}; else CREATE_USER=${CREATE_USER:-no}; fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
ETC=$DESTDIR/etc/brainycp-mail
PROM=$DESTDIR/etc/prometheus
UNITS=$DESTDIR/etc/systemd/system

die() {
    echo "install-files.sh: $*" >&2
    exit 1
}

if [ "$SET_OWNERS" = yes ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (owners are set), or with DESTDIR=SCRATCH SET_OWNERS=no"
fi
if [ "$CREATE_USER" = yes ] && ! id "$SERVICE_USER" >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    echo "created system user $SERVICE_USER"
fi
if [ "$SET_OWNERS" = yes ]; then
    for user in "$SERVICE_USER" "$PROMETHEUS_USER"; do
        # A numeric id needs no entry in the user database (a scratch root).
        case $user in *[!0-9]*) id "$user" >/dev/null 2>&1 ||
            die "user $user does not exist (PROMETHEUS_USER: the user Alertmanager runs as; SERVICE_USER: CREATE_USER=yes makes it)" ;;
        esac
    done
fi

# own OWNER:GROUP FILE...: set owners unless SET_OWNERS=no.
own() {
    owner=$1
    shift
    if [ "$SET_OWNERS" = yes ]; then chown "$owner" "$@"; fi
}

# Directories that already exist (/etc, /etc/prometheus) keep their modes; new parents
# (a scratch root) get 0755, then every file starts owner-only.
umask 022
mkdir -p "$ETC" "$PROM/rules" "$UNITS"
umask 077
own root:"$SERVICE_USER" "$ETC"
chmod 0750 "$ETC"
if [ ! -e "$ETC/config.yml" ]; then
    cp "$SRC/deploy/config.example.yml" "$ETC/config.yml"
fi
own root:"$SERVICE_USER" "$ETC/config.yml"
chmod 0640 "$ETC/config.yml"

# secret FILE OWNER: create FILE empty if missing, then owner-only read.
secret() {
    [ -e "$1" ] || : >"$1"
    own "$2":"$2" "$1"
    chmod 0400 "$1"
}
secret "$ETC/panel.pass" "$SERVICE_USER"
if [ ! -s "$ETC/webhook.token" ]; then
    rm -f "$ETC/webhook.token"
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ETC/webhook.token"
fi
secret "$ETC/webhook.token" "$SERVICE_USER"

chmod 0755 "$PROM/rules"
rm -f "$PROM/brainycp-mail-webhook.token" # 0400: replaced, not written into
cp "$ETC/webhook.token" "$PROM/brainycp-mail-webhook.token"
secret "$PROM/brainycp-mail-webhook.token" "$PROMETHEUS_USER"

RULES=$PROM/rules/brainycp-mail.rules.yml
if [ -e "$ETC/thresholds.local.yml" ]; then
    # The venv's Python has PyYAML, which alerts/build.py needs.
    PYTHON=${PYTHON:-$DESTDIR$VENV/bin/python}
    [ -x "$PYTHON" ] || die "$PYTHON not found: install the package into $VENV first (README), or set PYTHON"
    "$PYTHON" "$SRC/alerts/build.py" --overrides "$ETC/thresholds.local.yml" --out "$RULES.new"
    mv "$RULES.new" "$RULES"
    echo "alert rules rendered with $ETC/thresholds.local.yml"
else
    cp "$SRC/alerts/brainycp-mail.rules.yml" "$RULES"
fi
own root:root "$RULES"
chmod 0644 "$RULES"

for unit in "$SRC"/deploy/systemd/*.service; do
    # The units name /opt/brainycp-mail/venv; another VENV is written into the copies.
    sed "s#/opt/brainycp-mail/venv/#$VENV/#g" "$unit" >"$UNITS/$(basename "$unit")"
    own root:root "$UNITS/$(basename "$unit")"
    chmod 0644 "$UNITS/$(basename "$unit")"
done

echo "installed under ${DESTDIR:-/}: put the panel password in $ETC/panel.pass"
echo "(as root: printf '%s' 'PASSWORD' > $ETC/panel.pass keeps owner and mode)"
for daemon in exporter remediator; do
    [ -x "$DESTDIR$VENV/bin/brainycp-mail-$daemon" ] ||
        echo "warning: $DESTDIR$VENV/bin/brainycp-mail-$daemon is missing: the units run it;" \
            "install the package there first (README), or set VENV" >&2
done
