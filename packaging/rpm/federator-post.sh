# %post of pganalytics-federator ($1: 1 on install, 2 and more on upgrade).
# The state directory: kept on erase, like the deb keeps it on remove.
mkdir -p /var/lib/pganalytics/federator
chown pganalytics:pganalytics /var/lib/pganalytics/federator
chmod 0750 /var/lib/pganalytics/federator
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    echo "pganalytics-federator: edit /etc/pganalytics/federator.toml, check it with"
    echo "  'pga-federator check-config', then start the federator: systemctl enable --now pga-federator"
fi
exit 0
