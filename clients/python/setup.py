"""Builds the npvdb package; the gRPC stubs are generated here, at build time.

Metadata lives in pyproject.toml. This file only hooks build_py so that
npvdb/v1/*.py are generated from protos/npvdb/v1/npvdb.proto (found next to
this directory in the repo, or via $NPVDB_PROTO_ROOT) with the system protoc
and grpc_python_plugin, straight into the build directory: the source tree
never holds generated code.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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


setup(cmdclass={"build_py": BuildPyWithStubs})
