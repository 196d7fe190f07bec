# %pre of pganalytics-agent and pganalytics-federator: the pganalytics system user
# and group the services run as, before the files that belong to them unpack.
getent group pganalytics >/dev/null || groupadd -r pganalytics
getent passwd pganalytics >/dev/null ||
    useradd -r -g pganalytics -d /var/lib/pganalytics -M -s /sbin/nologin \
        -c "pgAnalytics agent and federator" pganalytics
exit 0
