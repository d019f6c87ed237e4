#!/bin/sh
# Install brainycp-mail's config, secrets, alert rules and units with the owners and modes
# that let each reader read what it needs and no one else anything secret:
#
#   /etc/brainycp-mail/                      root:brainycp-mail 0750  both daemons enter
#   /etc/brainycp-mail/config.yml            root:brainycp-mail 0640  both daemons read
#   /etc/brainycp-mail/panel.pass            brainycp-mail      0400  the daemons only
#   /etc/brainycp-mail/webhook.token         brainycp-mail      0400  the remediator's copy
#   /etc/prometheus/brainycp-mail-webhook.token  prometheus     0400  Alertmanager's copy
#   /etc/prometheus/rules/brainycp-mail.rules.yml root 0644          Prometheus (not secret)
#   /etc/systemd/system/brainycp-mail-*.service  root 0644
#
# Alertmanager (Debian's prometheus-alertmanager runs as user prometheus) gets its own
# copy of the webhook token: /etc/brainycp-mail stays closed to it, and no secret file is
# readable by a group. Existing files keep their content; owners and modes are reset.
#
# Usage, as root, from the source tree:   sh deploy/install-files.sh
# Environment: DESTDIR (a scratch root, default /), SERVICE_USER (brainycp-mail),
# PROMETHEUS_USER (prometheus); users may be names or numeric ids.
set -eu

DESTDIR=${DESTDIR:-}
SERVICE_USER=${SERVICE_USER:-brainycp-mail}
PROMETHEUS_USER=${PROMETHEUS_USER:-prometheus}
SRC=$(cd "$(dirname "$0")/.." && pwd)
ETC=$DESTDIR/etc/brainycp-mail
PROM=$DESTDIR/etc/prometheus

umask 077
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
if [ ! -e "$ETC/config.yml" ]; then
    install -m 0640 -o root -g "$SERVICE_USER" "$SRC/deploy/config.example.yml" "$ETC/config.yml"
fi
chown root:"$SERVICE_USER" "$ETC/config.yml"
chmod 0640 "$ETC/config.yml"

# secret FILE OWNER: create FILE empty if missing, then owner-only read.
secret() {
    [ -e "$1" ] || : >"$1"
    chown "$2":"$2" "$1"
    chmod 0400 "$1"
}
secret "$ETC/panel.pass" "$SERVICE_USER"
if [ ! -s "$ETC/webhook.token" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$ETC/webhook.token"
fi
secret "$ETC/webhook.token" "$SERVICE_USER"

install -d -m 0755 -o root -g root "$PROM" "$PROM/rules"
install -m 0400 -o "$PROMETHEUS_USER" -g "$PROMETHEUS_USER" "$ETC/webhook.token" \
    "$PROM/brainycp-mail-webhook.token"
install -m 0644 -o root -g root "$SRC/alerts/brainycp-mail.rules.yml" \
    "$PROM/rules/brainycp-mail.rules.yml"

install -d -m 0755 "$DESTDIR/etc/systemd/system"
for unit in "$SRC"/deploy/systemd/*.service; do
    install -m 0644 -o root -g root "$unit" "$DESTDIR/etc/systemd/system/"
done

echo "installed under ${DESTDIR:-/}: put the panel password in $ETC/panel.pass"
echo "(as root: printf '%s' 'PASSWORD' > $ETC/panel.pass keeps owner and mode)"
