# %preun of pganalytics-federator ($1: 0 on erase, 1 and more on upgrade): on erase,
# stop and disable the service; an upgrade restarts it in %postun instead.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now pga-federator.service >/dev/null 2>&1 || :
fi
exit 0
