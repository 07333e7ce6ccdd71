"""Install npvdb as a user would, then build and run the README's C example.

argv: BUILD_DIR README.md. Steps:
1. `cmake --install BUILD --prefix $HOME/.local`, run as the README's shell
   block says (HOME is a temporary folder here, `build` a link to BUILD_DIR);
   the same block then compiles the README's C program with pkg-config only.
2. The README's CMake project (find_package(npvdb-client), npvdb::client)
   builds the same program.
3. Both programs run against the installed npvdb-server (started here, on a
   free port given by NPVDB_ADDRESS) and must print what the example prints.
Nothing of the build tree is on any include or library path: only the prefix.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

BUILD, README = sys.argv[1], sys.argv[2]
CMAKE = os.environ.get("CMAKE_COMMAND", "cmake")


def fail(msg):
    print("install_check: " + msg, file=sys.stderr)
    sys.exit(1)


def readme_blocks():
    text = open(README, encoding="utf-8").read()
    start = text.index("\n### C\n")
    section = text[start:text.index("\n### CLI\n", start)]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def one_block(blocks, lang, needle):
    found = [b for k, b in blocks if k == lang and needle in b]
    if len(found) != 1:
        fail("README's C section: expected one ```{} block with {!r}, found {}".format(
            lang, needle, len(found)))
    return found[0]


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        fail("{} exited {}:\n{}{}".format(cmd, r.returncode, r.stdout, r.stderr))
    return r.stdout


def start_server(prefix, work):
    data, port_file = os.path.join(work, "data"), os.path.join(work, "port")
    log = open(os.path.join(work, "server.log"), "wb")
    proc = subprocess.Popen(
        [os.path.join(prefix, "bin", "npvdb-server"), "--listen", "127.0.0.1:0",
         "--port-file", port_file, "--data-dir", data],
        stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail("installed npvdb-server exited at start: " + open(log.name).read())
        try:
            port = open(port_file).read().strip()
            if port:
                return proc, "127.0.0.1:" + port
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    proc.kill()
    fail("installed npvdb-server wrote no port file")


def check_output(out, how):
    # The example's own lines: nearest of "a" is a then b (L2), "c" has no
    # tenant, tenant 42 is only "a" (with lang en), and it lists its
    # collection before dropping it.
    want = ["nearest: a b", "without a tenant: 1", "tenant 42: 1 hit, a, lang en",
            "c_example: dim 4, 3 vectors"]
    for line in want:
        if line not in out.splitlines():
            fail("{}: the example printed\n{}\nwithout the line {!r}".format(how, out, line))


def main():
    blocks = readme_blocks()
    program = one_block(blocks, "c", "int main")
    shell = one_block(blocks, "sh", "pkg-config --cflags --libs npvdb-client")
    cmakelists = one_block(blocks, "cmake", "find_package(npvdb-client")
    top = tempfile.mkdtemp(prefix="npvdb-install-")
    try:
        home, work = os.path.join(top, "home"), os.path.join(top, "work")
        os.makedirs(home)
        os.makedirs(work)
        os.symlink(os.path.abspath(BUILD), os.path.join(work, "build"))
        with open(os.path.join(work, "example.c"), "w") as f:
            f.write(program)
        env = dict(os.environ, HOME=home, PATH=os.path.dirname(CMAKE) + os.pathsep +
                   os.environ.get("PATH", "/usr/bin:/bin"))
        for var in ("PKG_CONFIG_PATH", "LD_LIBRARY_PATH", "CMAKE_PREFIX_PATH", "CPATH",
                    "LIBRARY_PATH"):
            env.pop(var, None)
        # 1. the README's shell block: install, then cc with pkg-config only
        run(["bash", "-euo", "pipefail", "-c", shell], cwd=work, env=env)
        prefix = os.path.join(home, ".local")
        for f in ("bin/npvdb-server", "bin/npvdb", "include/npvdb_client.h"):
            if not os.path.isfile(os.path.join(prefix, f)):
                fail("not installed: " + f)
        libs = os.listdir(os.path.join(prefix, "lib"))
        for f in ("libnpvdb-client.so", "libnpvdb-client.a", "pkgconfig", "cmake"):
            if f not in libs:
                fail("not installed: lib/{} (lib/ holds {})".format(f, sorted(libs)))
        if any("proto" in f for f in libs):
            fail("an internal library was installed: {}".format(sorted(libs)))
        # the shared library exports the API and nothing of protobuf-c's code
        syms = run(["nm", "-D", "--defined-only", os.path.join(prefix, "lib",
                                                              "libnpvdb-client.so")])
        names = [l.split()[-1] for l in syms.splitlines() if l.strip()]
        stray = [n for n in names if not n.startswith(("npvdb_client_", "npvdb_status_"))
                 and not n.startswith("NPVDB")]
        if stray or "npvdb_client_connect" not in names:
            fail("libnpvdb-client.so exports {}".format(stray[:10] or names[:10]))
        # the program runs without LD_LIBRARY_PATH (the README's rpath)
        server, addr = start_server(prefix, top)
        try:
            renv = dict(env, NPVDB_ADDRESS=addr)
            check_output(run([os.path.join(work, "example")], cwd=work, env=renv), "pkg-config")
            # the static library, as the README links it
            pc = dict(env, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"))
            static = os.path.join(work, "example-static")
            run(["bash", "-euo", "pipefail", "-c",
                 'cc example.c -o example-static $(pkg-config --cflags npvdb-client) '
                 '"$(pkg-config --variable=libdir npvdb-client)/libnpvdb-client.a" '
                 '$(pkg-config --libs --static npvdb-client)'], cwd=work, env=pc)
            if "npvdb" in run(["ldd", static]):
                fail("example-static still needs a shared npvdb library")
            check_output(run([static], cwd=work, env=renv), "static")
            # 2. the README's CMake project
            proj = os.path.join(top, "cmake-project")
            os.makedirs(proj)
            shutil.copy(os.path.join(work, "example.c"), proj)
            with open(os.path.join(proj, "CMakeLists.txt"), "w") as f:
                f.write(cmakelists)
            run([CMAKE, "-S", proj, "-B", os.path.join(proj, "out"),
                 "-DCMAKE_PREFIX_PATH=" + prefix], env=env)
            run([CMAKE, "--build", os.path.join(proj, "out")], env=env)
            check_output(run([os.path.join(proj, "out", "example")], env=renv), "find_package")
            # 3. and the installed CLI talks to it
            out = run([os.path.join(prefix, "bin", "npvdb"), "--server", addr, "health"])
            if "SERVING" not in out:
                fail("installed npvdb health: " + out)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        print("install_check: installed into {}, built the README example with "
              "pkg-config and with find_package, ran both".format(prefix))
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
