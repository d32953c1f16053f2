/*
 * Errors: the fatal-error hook, message buffers and the registry of
 * temporary files that a failure must not leave behind.
 */
#include "aesnet/core.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static aes_fatal_hook g_hook;
static int g_rank = -1;

static int g_collective = 1;

void aes_set_fatal_hook(aes_fatal_hook hook) { g_hook = hook; }
void aes_set_user_errors_collective(int collective) { g_collective = collective; }
int aes_user_errors_collective(void) { return g_collective; }
void aes_set_rank(int rank) { g_rank = rank; }
int aes_rank(void) { return g_rank; }

void aes_err_set(aes_err *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

#define AES_MAX_TMPFILES 16
static char g_tmp[AES_MAX_TMPFILES][4096];
static pthread_mutex_t g_tmp_lock = PTHREAD_MUTEX_INITIALIZER;

void aes_tmpfile_register(const char *path)
{
    pthread_mutex_lock(&g_tmp_lock);
    for (int i = 0; i < AES_MAX_TMPFILES; i++) {
        if (!g_tmp[i][0]) {
            snprintf(g_tmp[i], sizeof g_tmp[i], "%s", path);
            pthread_mutex_unlock(&g_tmp_lock);
            return;
        }
    }
    pthread_mutex_unlock(&g_tmp_lock);
    aes_internal_error("too many temporary files registered (max %d)", AES_MAX_TMPFILES);
}

void aes_tmpfile_forget(const char *path)
{
    pthread_mutex_lock(&g_tmp_lock);
    for (int i = 0; i < AES_MAX_TMPFILES; i++)
        if (g_tmp[i][0] && strcmp(g_tmp[i], path) == 0) g_tmp[i][0] = 0;
    pthread_mutex_unlock(&g_tmp_lock);
}

void aes_tmpfile_unlink_all(void)
{
    /* No lock: this runs on the way out, possibly from a thread holding it. */
    for (int i = 0; i < AES_MAX_TMPFILES; i++) {
        if (g_tmp[i][0]) {
            unlink(g_tmp[i]);
            g_tmp[i][0] = 0;
        }
    }
}

/* Whether a thread is taking the process down (the first to fail), its
 * exit code, and whether it is this thread. */
static int g_dying, g_dying_code;
static _Thread_local int t_dying;

void aes_fatal(aes_err_kind kind, const char *file, int line, const char *func,
               const char *fmt, ...)
{
    if (__atomic_exchange_n(&g_dying, 1, __ATOMIC_ACQ_REL)) {
        /* Failing again on the way out (MPI_Finalize closing HDF5 under a
         * loader thread, say): the first error is the one to report, and
         * its thread ends the process. A second report would change the
         * exit code and bury the cause. */
        if (!t_dying)
            for (;;) pause();
        _exit(g_dying_code);
    }
    t_dying = 1;
    g_dying_code = kind == AES_ERR_USER ? 1 : 2;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n') *p = ' ';
    aes_tmpfile_unlink_all();
    if (g_hook) g_hook(kind, file, line, func, msg);
    /* No hook installed (library use, unit tests): report and exit. */
    if (kind == AES_ERR_USER)
        fprintf(stderr, "aesnet: error: %s\n", msg);
    else
        fprintf(stderr, "aesnet: internal error at %s:%d (%s): %s\n", file, line, func, msg);
    fflush(NULL);
    _exit(kind == AES_ERR_USER ? 1 : 2);
}
