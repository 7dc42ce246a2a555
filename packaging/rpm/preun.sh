# twostep %preun (RPM; $1 is 0 when the package is erased, 1 or more on upgrade). Refuses to
# erase the package while a PAM configuration still loads pam_twostep.so: libpam fails every
# login through a stack whose module cannot be loaded. /var/lib/twostep (the enrollments) and
# /etc/twostep are kept on erase (a modified twostep.toml is saved as .rpmsave). An erase that
# goes ahead first stops and disables the self-service's and the fleet store's sockets and
# services (what systemd's systemd_preun macro does; written out here so that it runs only
# after the PAM check).
if [ "$1" -eq 0 ]; then
    refs=$(
        for file in /etc/pam.d/* /etc/pam.conf; do
            [ -f "$file" ] || continue
            sed 's/#.*//' "$file" | grep -nE '(^|[[:space:]/])pam_twostep\.so([[:space:]]|$)' |
                sed "s|^|$file:|" || true
        done
    )
    if [ -n "$refs" ]; then
        echo "twostep: refusing to erase the package: these PAM lines load pam_twostep.so:" >&2
        echo "$refs" >&2
        echo "twostep: delete them first (with authselect: from the custom profile, then" >&2
        echo "twostep: 'authselect apply-changes'), then erase the package again." >&2
        exit 1
    fi
    if command -v systemctl >/dev/null 2>&1; then
        systemctl --no-reload disable twostep-self.socket twostep-store.socket >/dev/null 2>&1 || :
        if [ -d /run/systemd/system ]; then
            systemctl stop twostep-self.socket twostep-self.service twostep-store.socket \
                twostep-store.service >/dev/null 2>&1 || :
        fi
    fi
fi
