# %postun of pganalytics-agent ($1: 0 on erase, 1 and more on upgrade). Erasing keeps
# the state in /var/lib/pganalytics/agent and an edited configuration (as .rpmsave);
# delete them by hand when no longer wanted. The pganalytics user stays, as the
# Fedora packaging guidelines ask.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -ge 1 ]; then
        systemctl try-restart pga-agent.service >/dev/null 2>&1 || :
    fi
fi
exit 0
