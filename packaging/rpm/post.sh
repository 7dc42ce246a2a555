# twostep %post (RPM; $1 is 1 on install, 2 or more on upgrade). Creates the state directory,
# root only. It changes no PAM configuration and no authselect profile: nobody is asked for a
# code until the admin adds pam_twostep.so to a service and enrolls users (docs/admin-guide.md).
if [ ! -e /var/lib/twostep ]; then
    install -d -o root -g root -m 0700 /var/lib/twostep
fi
