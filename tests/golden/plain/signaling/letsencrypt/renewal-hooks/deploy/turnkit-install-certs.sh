#!/bin/sh
# Managed by turnkit 0.1.0; local changes are overwritten on the next render or deploy.
# certbot deploy hook: certbot sets RENEWED_LINEAGE to the live dir of the renewed cert.
# coturn runs as `turnserver` and cannot read /etc/letsencrypt/live (root-only),
# the most common coturn TLS failure, so install a copy it can read, then reload:
# coturn re-reads certificates on SIGUSR2 without dropping relays; nginx on reload.
# On the signaling host the central usage store (redis-server@turnkit-usage, docs/metering.md) serves
# its own copy of the certificate, readable by group `redis`: refresh it too, then
# restart the store (the meters buffer and resend meanwhile). Hosts without the store skip that part.
# Every value is one shell word (`quote`); the reload lines are commands, set by turnkit.
set -eu
umask 077
lineage="${RENEWED_LINEAGE:?certbot did not set RENEWED_LINEAGE}"
dest=/etc/turnkit/certs
owner=turnserver
store=/etc/redis/turnkit-usage
store_group=redis

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

if [ -n "$store" ] && [ -d "$store" ]; then
    tmp=$(mktemp -d "$store/.new.XXXXXX")
    cp "$lineage/fullchain.pem" "$tmp/fullchain.pem"
    cp "$lineage/privkey.pem" "$tmp/privkey.pem"
    chmod 0640 "$tmp/fullchain.pem" "$tmp/privkey.pem"
    if getent group "$store_group" >/dev/null 2>&1; then
        chgrp "$store_group" "$tmp/fullchain.pem" "$tmp/privkey.pem"
    fi
    mv -f "$tmp/fullchain.pem" "$store/fullchain.pem"
    mv -f "$tmp/privkey.pem" "$store/privkey.pem"
    rmdir "$tmp"
    systemctl restart redis-server@turnkit-usage.service || echo "turnkit deploy hook: usage store restart failed" >&2
fi
