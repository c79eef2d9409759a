#!/bin/sh
# Managed by turnkit 0.1.0; local changes are overwritten on the next render or deploy.
# certbot deploy hook: certbot sets RENEWED_LINEAGE to the live dir of the renewed cert.
# coturn runs as `turnserver` and cannot read /etc/letsencrypt/live (root-only),
# the most common coturn TLS failure, so install a copy it can read, then reload:
# coturn re-reads certificates on SIGUSR2 without dropping relays; nginx on reload.
# Every value is one shell word (`quote`); the two reload lines are commands, set by turnkit.
set -eu
umask 077
lineage="${RENEWED_LINEAGE:?certbot did not set RENEWED_LINEAGE}"
dest=/etc/turnkit/certs
owner=turnserver

install -d -m 0700 "$dest"
tmp=$(mktemp -d "$dest/.new.XXXXXX")
cp "$lineage/fullchain.pem" "$tmp/fullchain.pem"
cp "$lineage/privkey.pem" "$tmp/privkey.pem"
chmod 0400 "$tmp/fullchain.pem" "$tmp/privkey.pem"
if id -u "$owner" >/dev/null 2>&1; then
    chown "$owner" "$dest" "$tmp/fullchain.pem" "$tmp/privkey.pem"
fi
mv -f "$tmp/fullchain.pem" "$dest/fullchain.pem"
mv -f "$tmp/privkey.pem" "$dest/privkey.pem"
rmdir "$tmp"

systemctl kill --signal=SIGUSR2 coturn.service || echo "turnkit deploy hook: coturn reload failed" >&2
systemctl reload nginx.service || echo "turnkit deploy hook: nginx reload failed" >&2
