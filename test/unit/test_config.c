/*
 * Run configuration: defaults, the shipped configs, the exact one-line
 * messages for bad input (each case runs in a forked child, since a user
 * error exits the process), overrides of every type, the text round trip
 * (exact floats, escaped strings, 64-bit integers), diffs, the resumable
 * keys, configs/README.md carrying the current key documentation, and a
 * second failure while the first takes the process down (not reported).
 */
#define _POSIX_C_SOURCE 200809L
#include "aesnet/config.h"
#include "aesnet/core.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

/* ---- running a piece of code in a child, capturing stderr ---------------------- */

typedef struct {
    int status; /* exit code, or 128 + signal */
    char err[8192];
} outcome;

static outcome in_child(void (*fn)(const void *), const void *arg)
{
    outcome o = {.status = -1};
    int fd[2];
    if (pipe(fd) != 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], 2);
        close(fd[1]);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(fd[1]);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd[0], o.err + n, sizeof o.err - 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
        if (n == sizeof o.err - 1) break;
    }
    o.err[n] = 0;
    close(fd[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return o;
}

/* "FILE" in pattern replaced by path. */
static void subst_file(char *out, size_t cap, const char *pattern, const char *path)
{
    size_t n = 0;
    out[0] = 0;
    for (const char *p = pattern; *p && n + 1 < cap;) {
        if (strncmp(p, "FILE", 4) == 0) {
            n += (size_t)snprintf(out + n, cap - n, "%s", path);
            p += 4;
        } else {
            out[n++] = *p++;
            out[n] = 0;
        }
    }
}

static void expect_user_error(int line, outcome o, const char *msg)
{
    char want[8192];
    snprintf(want, sizeof want, "aesnet: error: %s\n", msg);
    CHECK_MSG(o.status == 1 && strcmp(o.err, want) == 0,
              "(test line %d) status %d, stderr\n  got:  %s  want: %s", line, o.status, o.err,
              want);
}

static void expect_clean(int line, outcome o)
{
    CHECK_MSG(o.status == 0 && o.err[0] == 0, "(test line %d) status %d, stderr: %s", line,
              o.status, o.err);
}

/* ---- temporary files ------------------------------------------------------------ */

static char g_tmpdir[256];
static int g_ntemp;

static void temp_file(const char *content, char *path, size_t cap)
{
    snprintf(path, cap, "%s/case%03d.cfg", g_tmpdir, g_ntemp++);
    FILE *f = fopen(path, "w");
    if (!f || fputs(content, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* ---- child bodies ---------------------------------------------------------------- */

static void do_load(const void *arg)
{
    static aes_config c;
    aes_config_load(&c, (const char *)arg);
}

static void do_load_validate(const void *arg)
{
    static aes_config c;
    aes_config_load(&c, (const char *)arg);
    aes_config_validate(&c);
}

static void do_set(const void *arg)
{
    static aes_config c;
    aes_config_defaults(&c);
    aes_config_set(&c, (const char *)arg);
}

static void do_validate(const void *arg) { aes_config_validate((const aes_config *)arg); }

static void do_from_text(const void *arg)
{
    static aes_config c;
    aes_config_from_text(&c, (const char *)arg, "checkpoint run/ckpt_000100.h5");
}

/* The content as a file: loading it must fail with msg ("FILE" = its path). */
static void expect_file_error(int line, const char *content, const char *msg)
{
    char path[512], want[8192];
    temp_file(content, path, sizeof path);
    subst_file(want, sizeof want, msg, path);
    expect_user_error(line, in_child(do_load, path), want);
}

static void expect_set_error(int line, const char *assignment, const char *msg)
{
    expect_user_error(line, in_child(do_set, assignment), msg);
}

/* A valid configuration to break one key at a time. */
static aes_config valid_config(void)
{
    aes_config c;
    aes_config_defaults(&c);
    snprintf(c.out_dir, sizeof c.out_dir, "out");
    snprintf(c.train_data, sizeof c.train_data, "data.h5");
    return c;
}

/* ---- the tests ------------------------------------------------------------------- */

static void test_defaults(void)
{
    aes_config c;
    memset(&c, 0xab, sizeof c);
    aes_config_defaults(&c);
    CHECK(c.path[0] == 0 && c.out_dir[0] == 0 && c.train_data[0] == 0);
    CHECK(c.seed == 0 && c.image_size == 0 && c.augment == 1);
    CHECK(c.crop_scale_min == 0.6 && c.crop_ratio_max == 1.25 && c.flip_prob == 0.5);
    CHECK(c.workers == 1 && c.prefetch == 2);
    CHECK(strcmp(c.image, "resnet") == 0 && c.resnet_depth == 18 && c.resnet_width == 1.0);
    CHECK(c.vit_patch == 16 && c.vit_width == 768 && c.vit_depth == 12 && c.vit_heads == 12);
    CHECK(c.text_width == 512 && c.text_depth == 12 && c.text_heads == 8 && c.embed_dim == 512);
    CHECK(strcmp(c.fusion, "mlp") == 0 && c.fusion_width == 512 && c.fusion_heads == 8);
    CHECK(strcmp(c.logit_scale, "learned") == 0 && c.temperature == 0.07);
    CHECK(c.n_weights == 0);
    CHECK(strcmp(c.duplicates, "positive") == 0 && strcmp(c.affinity, "kl") == 0);
    CHECK(c.affinity_weight == 1.0 && c.affinity_tau == 0.1);
    CHECK(strcmp(c.affinity_reference, "features") == 0);
    CHECK(c.steps >= 1 && c.global_batch >= 1 && c.micro_batch == 0 && c.warmup <= c.steps);
    CHECK(c.lr == 1e-3 && c.min_lr_ratio == 0.1 && c.weight_decay == 0.1);
    CHECK(c.beta1 == 0.9 && c.beta2 == 0.98 && c.eps == 1e-6 && c.clip == 1.0);
    CHECK(c.keep_last >= 1 && c.log_every >= 1 && c.val_batch >= 1 && c.max_walltime == 0);
    CHECK(strcmp(c.batchnorm, "global") == 0 && strcmp(c.device, "cpu") == 0);
    CHECK(strcmp(c.precision, "fp32") == 0 && c.threads == 0 && c.max_nonfinite >= 1);

    /* The defaults with the two required paths are a valid configuration. */
    aes_config v = valid_config();
    expect_clean(__LINE__, in_child(do_validate, &v));

    /* A load starts from the defaults, whatever the struct held. */
    char path[512];
    temp_file("train = { steps = 7; };\n", path, sizeof path);
    c.lr = 0.5;
    aes_config_load(&c, path);
    CHECK(c.steps == 7 && c.lr == 1e-3 && strcmp(c.path, path) == 0);

    /* Every value form a file may use. */
    temp_file("# comment\n// comment\n/* block\n comment */\n"
              "run = { seed = 5000000000L; out_dir = \"a\" \"b\"; };\n"
              "data = { augment = false; crop_scale_min = 1; image_size = 0x40; };\n"
              "loss = { attribute_weights = (1, 0.5, 2); };\n"
              "train = { max_walltime = 3600; };\n"
              "model = { };\n",
              path, sizeof path);
    aes_config_load(&c, path);
    CHECK(c.seed == 5000000000LL && strcmp(c.out_dir, "ab") == 0);
    CHECK(c.augment == 0 && c.crop_scale_min == 1.0 && c.image_size == 64);
    CHECK(c.n_weights == 3 && c.weights[0] == 1.0 && c.weights[1] == 0.5 && c.weights[2] == 2.0);
    CHECK(c.max_walltime == 3600.0);
}

/* ---- a second failure while the first takes the process down ------------------ */

static int g_failing_again;

static void *fail_again(void *arg)
{
    (void)arg;
    __atomic_store_n(&g_failing_again, 1, __ATOMIC_RELEASE);
    aes_internal_error("second failure, on another thread");
    return NULL;
}

/* The hook of the first error: another thread fails (in the product, a loader
 * thread when MPI_Finalize ends HDF5 under it), and the first error's exit
 * has to wait for it; or this thread fails again inside the hook. */
static void slow_hook(aes_err_kind kind, const char *file, int line, const char *func,
                      const char *msg)
{
    (void)file, (void)line, (void)func, (void)msg;
    static int calls;
    if (kind != AES_ERR_USER || calls++) return;
    if (getenv("AESNET_TEST_SAME_THREAD")) aes_internal_error("second failure, same thread");
    pthread_t th;
    pthread_create(&th, NULL, fail_again, NULL);
    struct timespec ts = {0, 1000 * 1000};
    while (!__atomic_load_n(&g_failing_again, __ATOMIC_ACQUIRE)) nanosleep(&ts, NULL);
    ts.tv_nsec = 300 * 1000 * 1000; /* for it to get through aes_fatal, if it could */
    nanosleep(&ts, NULL);
}

static void first_error(const void *arg)
{
    if (arg) setenv("AESNET_TEST_SAME_THREAD", "1", 1);
    aes_set_fatal_hook(slow_hook);
    aes_user_error("first failure");
}

static void test_second_failure(void)
{
    /* One line, the first error's, and its exit code. */
    outcome o = in_child(first_error, NULL);
    CHECK_MSG(o.status == 1 && strcmp(o.err, "aesnet: error: first failure\n") == 0,
              "status %d, stderr '%s'", o.status, o.err);
    o = in_child(first_error, "same thread");
    CHECK_MSG(o.status == 1 && o.err[0] == 0, "status %d, stderr '%s'", o.status, o.err);
}

static void test_file_errors(void)
{
    expect_file_error(__LINE__,
                      "# a comment\n"
                      "train = {\n"
                      "  steps = 10;\n"
                      "  stesp = 5;\n"
                      "};\n",
                      "FILE:4: unknown key 'train.stesp' (did you mean 'train.steps'?)");
    expect_file_error(__LINE__, "model = { colour = 1; };\n", "FILE:1: unknown key 'model.colour'");
    expect_file_error(__LINE__, "data = {\n  lr = 0.1;\n};\n",
                      "FILE:2: unknown key 'data.lr' (did you mean 'train.lr'?)");
    expect_file_error(__LINE__, "run = { seed = 1; };\ntrian = { steps = 1; };\n",
                      "FILE:2: unknown group 'trian' (did you mean 'train'?)");
    expect_file_error(__LINE__, "optimizer = { lr = 1.0; };\n",
                      "FILE:1: unknown group 'optimizer' (groups: run, data, model, loss, train)");
    expect_file_error(__LINE__, "\nsteps = 5;\n",
                      "FILE:2: unknown key 'steps' (did you mean 'train.steps'?)");
    expect_file_error(__LINE__, "train = { opt = { lr = 1.0; }; };\n",
                      "FILE:1: unknown key 'train.opt'");
    expect_file_error(__LINE__, "train = 5;\n",
                      "FILE:1: train: expected a group (train = { ... };), got an integer");
    /* Wrong types. */
    expect_file_error(__LINE__, "train = { steps = \"ten\"; };\n",
                      "FILE:1: train.steps: expected an integer, got a string");
    expect_file_error(__LINE__, "train = {\n  steps = 1e3;\n};\n",
                      "FILE:2: train.steps: expected an integer, got a float");
    expect_file_error(__LINE__, "data = { augment = 1; };\n",
                      "FILE:1: data.augment: expected true or false, got an integer");
    expect_file_error(__LINE__, "train = { lr = \"1e-3\"; };\n",
                      "FILE:1: train.lr: expected a number, got a string");
    expect_file_error(__LINE__, "model = { image = resnet; };\n", "FILE:1: syntax error");
    expect_file_error(__LINE__, "model = { fusion = [\"mlp\"]; };\n",
                      "FILE:1: model.fusion: expected a string, got an array");
    expect_file_error(__LINE__, "loss = { attribute_weights = 1.0; };\n",
                      "FILE:1: loss.attribute_weights: expected a list of numbers, got a float");
    expect_file_error(__LINE__, "loss = { attribute_weights = (1.0, \"x\"); };\n",
                      "FILE:1: loss.attribute_weights: element 2: expected a number, got a string");
    /* Ranges and allowed values. */
    expect_file_error(__LINE__, "train = { lr = -1; };\n",
                      "FILE:1: train.lr: -1 is out of range (must be > 0)");
    expect_file_error(__LINE__, "train = { beta2 = 1.0; };\n",
                      "FILE:1: train.beta2: 1 is out of range (must be in [0, 1))");
    expect_file_error(__LINE__, "data = { crop_scale_min = 0.0; };\n",
                      "FILE:1: data.crop_scale_min: 0 is out of range (must be in (0, 1])");
    expect_file_error(__LINE__, "train = {\n\n  global_batch = 0;\n};\n",
                      "FILE:3: train.global_batch: 0 is out of range (must be >= 1)");
    expect_file_error(__LINE__, "data = { image_size = 3000000000L; };\n",
                      "FILE:1: data.image_size: 3000000000 is out of range (must be <= 2147483647)");
    expect_file_error(__LINE__, "train = { lr = 1e400; };\n",
                      "FILE:1: train.lr: inf is not a finite number");
    expect_file_error(__LINE__, "model = { resnet_depth = 20; };\n",
                      "FILE:1: model.resnet_depth: 20 is not one of 18, 34, 50");
    expect_file_error(__LINE__, "model = { fusion = \"mpl\"; };\n",
                      "FILE:1: model.fusion: 'mpl' is not one of none, mlp, transformer");
    expect_file_error(__LINE__, "loss = { attribute_weights = [1.0, -0.5]; };\n",
                      "FILE:1: loss.attribute_weights: element 2: -0.5 is out of range (must be >= 0)");
    /* libconfig 1.5 would silently wrap these. */
    expect_file_error(__LINE__, "run = {\n  seed = 5000000000;\n};\n",
                      "FILE:2: integer 5000000000 does not fit in 32 bits: write it as 5000000000L");
    expect_file_error(__LINE__, "train = { max_walltime = -2147483649; };\n",
                      "FILE:1: integer -2147483649 does not fit in 32 bits: write it as -2147483649L");
    /* ... but not inside strings, comments or names. */
    char path[512];
    temp_file("# seed = 5000000000\nrun = { out_dir = \"x5000000000\"; seed = 2147483647; };\n",
              path, sizeof path);
    expect_clean(__LINE__, in_child(do_load, path));
    /* Syntax errors, with libconfig's own text. */
    expect_file_error(__LINE__, "train = {\n  steps = ;\n};\n", "FILE:2: syntax error");
    expect_file_error(__LINE__, "train = {\n  steps = 1;\n  steps = 2;\n};\n",
                      "FILE:3: syntax error: duplicate setting name");
    expect_file_error(__LINE__, "loss = { attribute_weights = [1, 2.0]; };\n",
                      "FILE:1: syntax error: mismatched element type in array");
    /* Strings longer than their field. */
    char *big = malloc(6000);
    strcpy(big, "run = { out_dir = \"");
    size_t n = strlen(big);
    memset(big + n, 'a', 5000);
    strcpy(big + n + 5000, "\"; };\n");
    expect_file_error(__LINE__, big, "FILE:1: run.out_dir: the value is 5000 bytes long (at most 4095)");
    free(big);
    /* A file that is not there. */
    char missing[512];
    snprintf(missing, sizeof missing, "%s/no-such.cfg", g_tmpdir);
    char want[1024];
    snprintf(want, sizeof want, "%s: cannot open the config file: No such file or directory", missing);
    expect_user_error(__LINE__, in_child(do_load, missing), want);
    /* From checkpoint text, the origin stands for the file. */
    expect_user_error(__LINE__, in_child(do_from_text, "train = {\n  steps = 0;\n};\n"),
                      "checkpoint run/ckpt_000100.h5:2: train.steps: 0 is out of range (must be >= 1)");
    expect_user_error(__LINE__, in_child(do_from_text, "train = { steps = 1 "),
                      "checkpoint run/ckpt_000100.h5:1: syntax error");
}

static void test_set(void)
{
    aes_config c;
    aes_config_defaults(&c);
    aes_config_set(&c, "train.steps=500");
    aes_config_set(&c, " run.seed = 5000000000L ");
    aes_config_set(&c, "train.lr=5e-4");
    aes_config_set(&c, "train.clip=2");
    aes_config_set(&c, "data.augment=false");
    aes_config_set(&c, "run.out_dir= runs/a b ");
    aes_config_set(&c, "data.train=\"x\\\"y=z\"");
    aes_config_set(&c, "model.image=vit");
    aes_config_set(&c, "model.fusion=\"transformer\"");
    aes_config_set(&c, "model.resnet_depth=50");
    CHECK(c.steps == 500 && c.seed == 5000000000LL && c.lr == 5e-4 && c.clip == 2.0);
    CHECK(c.augment == 0);
    CHECK_MSG(strcmp(c.out_dir, "runs/a b") == 0, "%s", c.out_dir);
    CHECK_MSG(strcmp(c.train_data, "x\"y=z") == 0, "%s", c.train_data);
    CHECK(strcmp(c.image, "vit") == 0 && strcmp(c.fusion, "transformer") == 0);
    CHECK(c.resnet_depth == 50);
    aes_config_set(&c, "loss.attribute_weights=[1.0, 2.0, 0.5]");
    CHECK(c.n_weights == 3 && c.weights[0] == 1.0 && c.weights[1] == 2.0 && c.weights[2] == 0.5);
    aes_config_set(&c, "loss.attribute_weights=(1, 2.5)");
    CHECK(c.n_weights == 2 && c.weights[0] == 1.0 && c.weights[1] == 2.5);
    aes_config_set(&c, "loss.attribute_weights=[3, 4]");
    CHECK(c.n_weights == 2 && c.weights[0] == 3.0 && c.weights[1] == 4.0);
    aes_config_set(&c, "loss.attribute_weights=[]");
    CHECK(c.n_weights == 0);

    expect_set_error(__LINE__, "foo.bar=1", "--set foo.bar=1: unknown key 'foo.bar'");
    expect_set_error(__LINE__, "train.stpes=1",
                     "--set train.stpes=1: unknown key 'train.stpes' (did you mean 'train.steps'?)");
    expect_set_error(__LINE__, "train.steps", "--set train.steps: expected key=value");
    expect_set_error(__LINE__, "train.steps=", "--set train.steps=: expected an integer, got nothing");
    expect_set_error(__LINE__, "train.lr=abc",
                     "--set train.lr=abc: 'abc' is not a libconfig value (like 5, 1e-3, \"text\", "
                     "true, [1.0, 2.0])");
    expect_set_error(__LINE__, "train.steps=5; train = 3",
                     "--set train.steps=5; train = 3: '5; train = 3' is not a libconfig value (like "
                     "5, 1e-3, \"text\", true, [1.0, 2.0])");
    expect_set_error(__LINE__, "train.steps=\"ten\"",
                     "--set train.steps=\"ten\": expected an integer, got a string");
    expect_set_error(__LINE__, "train.steps=1.5", "--set train.steps=1.5: expected an integer, got a float");
    expect_set_error(__LINE__, "data.augment=1",
                     "--set data.augment=1: expected true or false, got an integer");
    expect_set_error(__LINE__, "train.lr = -1", "--set train.lr=-1: -1 is out of range (must be > 0)");
    expect_set_error(__LINE__, "model.fusion=mpl",
                     "--set model.fusion=mpl: 'mpl' is not one of none, mlp, transformer");
    expect_set_error(__LINE__, "model.fusion=\"mpl\"",
                     "--set model.fusion=\"mpl\": 'mpl' is not one of none, mlp, transformer");
    expect_set_error(__LINE__, "run.seed=5000000000",
                     "--set run.seed=5000000000: integer 5000000000 does not fit in 32 bits: write "
                     "it as 5000000000L");
    expect_set_error(__LINE__, "loss.attribute_weights=[1.0, -1.0]",
                     "--set loss.attribute_weights=[1.0, -1.0]: element 2: -1 is out of range (must "
                     "be >= 0)");
}

static void test_validate(void)
{
    aes_config c;
    aes_config_defaults(&c);
    expect_user_error(__LINE__, in_child(do_validate, &c), "config: run.out_dir is required");
    snprintf(c.out_dir, sizeof c.out_dir, "out");
    expect_user_error(__LINE__, in_child(do_validate, &c), "config: data.train is required");

    c = valid_config();
    c.global_batch = 64;
    c.micro_batch = 48;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: train.micro_batch (48) must divide train.global_batch (64)");
    c.micro_batch = 16;
    expect_clean(__LINE__, in_child(do_validate, &c));

    c = valid_config();
    c.steps = 100;
    c.warmup = 101;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: train.warmup (101) must not exceed train.steps (100)");

    c = valid_config();
    snprintf(c.image, sizeof c.image, "vit");
    c.vit_width = 770;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: model.vit_width (770) must be divisible by model.vit_heads (12)");
    c.vit_width = 768;
    c.image_size = 100;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: data.image_size (100) must be a multiple of model.vit_patch (16)");
    c.image_size = 224;
    expect_clean(__LINE__, in_child(do_validate, &c));
    /* The ViT keys do not matter for a ResNet. */
    snprintf(c.image, sizeof c.image, "resnet");
    c.vit_width = 770;
    expect_clean(__LINE__, in_child(do_validate, &c));

    c = valid_config();
    c.text_heads = 7;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: model.text_width (512) must be divisible by model.text_heads (7)");

    c = valid_config();
    c.fusion_heads = 6;
    expect_clean(__LINE__, in_child(do_validate, &c)); /* MLP fusion has no heads */
    snprintf(c.fusion, sizeof c.fusion, "transformer");
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: model.fusion_width (512) must be divisible by model.fusion_heads (6) "
                      "for model.fusion = \"transformer\"");

    c = valid_config();
    c.n_weights = 2;
    c.weights[0] = c.weights[1] = 0;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: loss.attribute_weights: at least one weight must be > 0");

    /* Values written by code get the schema's checks too. */
    c = valid_config();
    c.lr = -1;
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: train.lr: -1 is out of range (must be > 0)");
    c = valid_config();
    snprintf(c.device, sizeof c.device, "tpu");
    expect_user_error(__LINE__, in_child(do_validate, &c),
                      "config: train.device: 'tpu' is not one of cpu, cuda");

    /* A loaded file's messages name the file. */
    char path[512], want[1024];
    temp_file("run = { out_dir = \"o\"; };\ndata = { train = \"d.h5\"; };\n"
              "train = { global_batch = 100; micro_batch = 30; };\n",
              path, sizeof path);
    snprintf(want, sizeof want, "%s: train.micro_batch (30) must divide train.global_batch (100)", path);
    expect_user_error(__LINE__, in_child(do_load_validate, path), want);
    temp_file("data = { train = \"d.h5\"; };\n", path, sizeof path);
    snprintf(want, sizeof want, "%s: run.out_dir is required", path);
    expect_user_error(__LINE__, in_child(do_load_validate, path), want);
}

/* The source tree: $SRC_DIR (set by ctest), else two folders above this file. */
static void source_dir(char *out, size_t cap)
{
    const char *env = getenv("SRC_DIR");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return;
    }
    snprintf(out, cap, "%s", __FILE__);
    for (int up = 0; up < 3; up++) {
        char *slash = strrchr(out, '/');
        if (slash) *slash = 0;
        else snprintf(out, cap, up == 2 ? "." : "..");
    }
    if (!out[0]) snprintf(out, cap, "/");
}

static void test_shipped_configs(void)
{
    char src[4096], path[4400];
    source_dir(src, sizeof src);
    const char *names[] = {"demo.cfg", "resnet50.cfg", "vit_b16.cfg"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/configs/%s", src, names[i]);
        outcome o = in_child(do_load_validate, path);
        CHECK_MSG(o.status == 0 && !o.err[0], "%s: status %d: %s", path, o.status, o.err);
    }
    aes_config c;
    snprintf(path, sizeof path, "%s/configs/demo.cfg", src);
    aes_config_load(&c, path);
    CHECK(strcmp(c.train_data, "demo/demo.h5") == 0 && strcmp(c.out_dir, "demo/run") == 0);
    CHECK(strcmp(c.image, "resnet") == 0 && c.resnet_depth == 18 && c.resnet_width == 0.25);
    CHECK(c.image_size == 0 && c.text_width == 128 && c.text_depth == 2 && c.text_heads == 4);
    CHECK(c.embed_dim == 128 && strcmp(c.fusion, "mlp") == 0 && c.fusion_width == 256);
    CHECK(strcmp(c.affinity, "kl") == 0 && strcmp(c.affinity_reference, "features") == 0);
    CHECK(c.global_batch == 64 && c.lr == 1e-3 && c.warmup == 30 && c.ckpt_every == 100);
    CHECK(c.keep_last == 3 && c.log_every == 10 && c.val_every == 50);
    CHECK(strcmp(c.device, "cpu") == 0);

    snprintf(path, sizeof path, "%s/configs/resnet50.cfg", src);
    aes_config_load(&c, path);
    CHECK(strcmp(c.image, "resnet") == 0 && c.resnet_depth == 50 && c.image_size == 224);
    CHECK(c.global_batch == 4096 && c.micro_batch == 256 && c.lr == 5e-4);
    CHECK(c.steps == 50000 && c.warmup == 2000 && c.embed_dim == 512);
    CHECK(strcmp(c.device, "cuda") == 0 && strcmp(c.precision, "bf16") == 0);
    CHECK(strcmp(c.train_data, "data/aesthetics.h5") == 0);

    snprintf(path, sizeof path, "%s/configs/vit_b16.cfg", src);
    aes_config_load(&c, path);
    CHECK(strcmp(c.image, "vit") == 0 && c.vit_patch == 16 && c.vit_width == 768);
    CHECK(c.vit_depth == 12 && c.vit_heads == 12 && c.image_size == 224);
    CHECK(c.text_width == 512 && c.text_depth == 12 && c.text_heads == 8);
    CHECK(c.global_batch == 4096 && c.micro_batch == 256 && strcmp(c.precision, "bf16") == 0);
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 11;
}

static void test_round_trip(void)
{
    aes_config a = valid_config();
    snprintf(a.out_dir, sizeof a.out_dir, "runs/\"quoted\" back\\slash\nnew\tline \x01 caf\xc3\xa9");
    a.seed = 5000000000LL;
    a.lr = 1e-3;
    a.min_lr_ratio = 0.1;
    a.temperature = 1.0 / 3.0;
    a.max_walltime = 86400.5;
    a.eps = 1e-300;
    a.augment = 0;
    a.micro_batch = 16;
    snprintf(a.image, sizeof a.image, "vit");
    snprintf(a.affinity, sizeof a.affinity, "mse");
    a.n_weights = AES_CFG_MAX_ATTR;
    uint64_t s = 12345;
    for (int i = 0; i < a.n_weights; i++) a.weights[i] = (double)lcg(&s) / (double)(1ULL << 53) * 3.0;
    a.weights[0] = 1.7976931348623157e308;
    a.weights[1] = 4.9406564584124654e-324;
    a.weights[2] = 1.0;
    a.weights[3] = 0.0;

    char *text = aes_config_to_text(&a);
    CHECK(strstr(text, "  lr = 0.001;\n") != NULL);
    CHECK(strstr(text, "  min_lr_ratio = 0.1;\n") != NULL);
    CHECK(strstr(text, "  seed = 5000000000L;\n") != NULL);
    CHECK(strstr(text, "  clip = 1.0;\n") != NULL);
    const char *run = strstr(text, "\nrun = {\n"), *data = strstr(text, "\ndata = {\n");
    const char *model = strstr(text, "\nmodel = {\n"), *loss = strstr(text, "\nloss = {\n");
    const char *train = strstr(text, "\ntrain = {\n");
    CHECK(run && data && model && loss && train && run < data && data < model && model < loss &&
          loss < train);

    aes_config b;
    aes_config_from_text(&b, text, "round trip");
    char diff[1024];
    int nd = aes_config_diff(&a, &b, diff, sizeof diff);
    CHECK_MSG(nd == 0, "%d keys differ: %s\n%s", nd, diff, text);
    CHECK(b.lr == 1e-3 && b.min_lr_ratio == 0.1 && b.temperature == 1.0 / 3.0);
    CHECK(strcmp(a.out_dir, b.out_dir) == 0 && b.seed == 5000000000LL);
    CHECK(memcmp(a.weights, b.weights, sizeof a.weights) == 0 && b.n_weights == AES_CFG_MAX_ATTR);
    CHECK(strcmp(b.path, "round trip") == 0);

    /* Writing again gives the same text (apart from the origin comment). */
    char *text2 = aes_config_to_text(&b);
    CHECK(strcmp(strchr(text, '\n'), strchr(text2, '\n')) == 0);
    free(text2);
    free(text);

    /* The defaults round trip too (empty strings, empty list). */
    aes_config d;
    aes_config_defaults(&d);
    text = aes_config_to_text(&d);
    CHECK(strstr(text, "  attribute_weights = [];\n") != NULL);
    aes_config_from_text(&b, text, "defaults");
    CHECK(aes_config_diff(&d, &b, diff, sizeof diff) == 0);
    free(text);
}

static void test_diff(void)
{
    aes_config a, b;
    aes_config_defaults(&a);
    aes_config_defaults(&b);
    char out[256];
    CHECK(aes_config_diff(&a, &b, out, sizeof out) == 0 && out[0] == 0);
    snprintf(b.path, sizeof b.path, "elsewhere.cfg"); /* not a key */
    CHECK(aes_config_diff(&a, &b, out, sizeof out) == 0);

    b.lr = 2e-3;
    snprintf(b.image, sizeof b.image, "vit");
    b.n_weights = 2;
    b.weights[0] = b.weights[1] = 1.0;
    CHECK(aes_config_diff(&a, &b, out, sizeof out) == 3);
    CHECK_MSG(strcmp(out, "model.image, loss.attribute_weights, train.lr") == 0, "%s", out);

    /* Lists compare element by element; elements past the count do not count. */
    a.n_weights = 2;
    a.weights[0] = 1.0;
    a.weights[1] = 1.0;
    a.weights[5] = 7.0;
    CHECK(aes_config_diff(&a, &b, out, sizeof out) == 2);
    b.weights[1] = 0.5;
    CHECK(aes_config_diff(&a, &b, out, sizeof out) == 3);

    /* A small buffer truncates the text, never the count. */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(aes_config_diff(&a, &b, small, sizeof small) == 3 && strlen(small) == 7);
    CHECK(aes_config_diff(&a, &b, NULL, 0) == 3);
}

static void test_resumable(void)
{
    const char *yes[] = {"train.steps", "train.ckpt_every", "train.keep_last", "train.log_every",
                         "train.val_every", "train.max_walltime", "run.out_dir"};
    for (int i = 0; i < 7; i++) CHECK_MSG(aes_config_key_resumable(yes[i]), "%s", yes[i]);
    const char *no[] = {"train.lr", "model.image", "run.seed", "train.global_batch", "data.train",
                        "train.steps2", "steps", ""};
    for (int i = 0; i < 8; i++) CHECK_MSG(!aes_config_key_resumable(no[i]), "%s", no[i]);
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    size_t r;
    while ((r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) s = realloc(s, cap *= 2);
    }
    fclose(f);
    s[n] = 0;
    return s;
}

static void test_doc(void)
{
    FILE *f = tmpfile();
    aes_config_print_doc(f);
    long n = ftell(f);
    rewind(f);
    char *doc = malloc((size_t)n + 1);
    CHECK(fread(doc, 1, (size_t)n, f) == (size_t)n);
    doc[n] = 0;
    fclose(f);

    /* Every key of the written text is documented, in its own row. */
    aes_config d;
    aes_config_defaults(&d);
    char *text = aes_config_to_text(&d);
    char group[32] = "";
    int keys = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char name[64];
        if (line[0] != ' ' && line[0] != '#' && strstr(line, " = {")) {
            sscanf(line, "%31s", group);
            continue;
        }
        if (line[0] == ' ' && sscanf(line, " %63[a-z_0-9] =", name) == 1) {
            char row[128];
            snprintf(row, sizeof row, "\n%s.%s ", group, name);
            CHECK_MSG(strstr(doc, row) != NULL, "%s.%s is not documented", group, name);
            keys++;
        }
    }
    CHECK_MSG(keys == 54, "%d keys", keys);
    free(text);

    /* configs/README.md carries the table as printed now. */
    char src[4096], path[4400];
    source_dir(src, sizeof src);
    snprintf(path, sizeof path, "%s/configs/README.md", src);
    char *readme = read_all(path);
    CHECK_MSG(readme && strstr(readme, doc) != NULL,
              "%s does not hold the current key table: regenerate it with test/tools/config_doc",
              path);
    free(readme);
    free(doc);
}

int main(void)
{
    snprintf(g_tmpdir, sizeof g_tmpdir, "%s/aesnet_test_config_XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmpdir)) {
        perror("mkdtemp");
        return 2;
    }
    test_defaults();
    test_file_errors();
    test_second_failure();
    test_set();
    test_validate();
    test_shipped_configs();
    test_round_trip();
    test_diff();
    test_resumable();
    test_doc();
    for (int i = 0; i < g_ntemp; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/case%03d.cfg", g_tmpdir, i);
        unlink(path);
    }
    rmdir(g_tmpdir);
    return check_report();
}
