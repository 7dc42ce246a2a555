/*
 * libnss_twostepci.so: a case-insensitive NSS passwd source for the tests, as winbind or SSSD
 * are against Active Directory: getpwnam_r("ALICE") finds the line "alice:..." and answers
 * pw_name "alice". It is loaded by nss_wrapper (NSS_WRAPPER_MODULE_SO_PATH, with
 * NSS_WRAPPER_MODULE_FN_PREFIX=twostepci), never by the system's nsswitch.conf.
 *
 * TWOSTEP_TEST_NSS_PASSWD names a passwd-format file. A name equal (ignoring case) to
 * TWOSTEP_TEST_NSS_FAIL makes the lookup fail as an unreachable directory does
 * (NSS_STATUS_UNAVAIL, errno EIO). Built by tests/build.rs.
 */
#include <errno.h>
#include <nss.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Copies `line` into `buf` and points the fields of `pw` into it. */
static enum nss_status fill(const char *line, struct passwd *pw, char *buf, size_t len,
                            int *errnop)
{
    size_t n = strcspn(line, "\n");
    if (n + 1 > len) {
        *errnop = ERANGE;
        return NSS_STATUS_TRYAGAIN;
    }
    memcpy(buf, line, n);
    buf[n] = '\0';
    char *f[7];
    char *rest = buf;
    for (int i = 0; i < 7; i++) {
        f[i] = strsep(&rest, ":");
        if (f[i] == NULL) {
            return NSS_STATUS_NOTFOUND;
        }
    }
    pw->pw_name = f[0];
    pw->pw_passwd = f[1];
    pw->pw_uid = (uid_t)strtoul(f[2], NULL, 10);
    pw->pw_gid = (gid_t)strtoul(f[3], NULL, 10);
    pw->pw_gecos = f[4];
    pw->pw_dir = f[5];
    pw->pw_shell = f[6];
    return NSS_STATUS_SUCCESS;
}

/* Finds the first line whose name matches `name` ignoring case, or whose uid is `uid`. */
static enum nss_status find(const char *name, uid_t uid, struct passwd *pw, char *buf,
                            size_t len, int *errnop)
{
    const char *fail = getenv("TWOSTEP_TEST_NSS_FAIL");
    if (name != NULL && fail != NULL && strcasecmp(name, fail) == 0) {
        *errnop = EIO;
        return NSS_STATUS_UNAVAIL;
    }
    const char *path = getenv("TWOSTEP_TEST_NSS_PASSWD");
    FILE *file = path != NULL ? fopen(path, "re") : NULL;
    if (file == NULL) {
        *errnop = ENOENT;
        return NSS_STATUS_UNAVAIL;
    }
    char line[1024];
    enum nss_status status = NSS_STATUS_NOTFOUND;
    while (fgets(line, sizeof line, file) != NULL) {
        size_t name_len = strcspn(line, ":");
        char *uid_field = strchr(line, ':');
        uid_field = uid_field != NULL ? strchr(uid_field + 1, ':') : NULL;
        int match = name != NULL
            ? strlen(name) == name_len && strncasecmp(line, name, name_len) == 0
            : uid_field != NULL && (uid_t)strtoul(uid_field + 1, NULL, 10) == uid;
        if (match) {
            status = fill(line, pw, buf, len, errnop);
            break;
        }
    }
    fclose(file);
    return status;
}

enum nss_status _nss_twostepci_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                          size_t len, int *errnop)
{
    return find(name, 0, pw, buf, len, errnop);
}

enum nss_status _nss_twostepci_getpwuid_r(uid_t uid, struct passwd *pw, char *buf, size_t len,
                                          int *errnop)
{
    return find(NULL, uid, pw, buf, len, errnop);
}
