"""Builds the npvdb package; the gRPC stubs are generated here, at build time.

build_py is hooked so that npvdb/v1/*.py are generated from
protos/npvdb/v1/npvdb.proto (found next to this directory in the repo, or via
$NPVDB_PROTO_ROOT) with the system protoc and grpc_python_plugin, straight
into the build directory: the source tree never holds generated code.

There is deliberately no pyproject.toml: with one, pip builds in an isolated
environment and fetches setuptools from PyPI, which is not reachable here.
Without it, `pip install clients/python` builds with the setuptools already
installed (Debian's python3-setuptools), offline. `--no-build-isolation`
works either way.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen_stubs  # noqa: E402  (the one generator, shared with CMake)


class BuildPyWithStubs(build_py):
    def run(self):
        super().run()
        if not self.dry_run:
            gen_stubs.generate(self.build_lib)

    def find_package_modules(self, package, package_dir):
        # npvdb.v1 has no sources in the tree: its files are generated.
        if package == "npvdb.v1":
            return []
        return super().find_package_modules(package, package_dir)


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    README = f.read()

setup(
    name="npvdb",
    version="0.1.0",
    description="Python client of the npvdb vector database (numpy in, numpy out, gRPC)",
    long_description=README,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=["npvdb", "npvdb.v1"],
    install_requires=["grpcio>=1.51", "protobuf>=4.21", "numpy>=1.21"],
    extras_require={"progress": ["tqdm"]},
    cmdclass={"build_py": BuildPyWithStubs},
)
