"""Build hook: the optional C accelerators of the queue parser (brainycp/_*scan.c).

Everything else is in pyproject.toml. The extensions are optional: where no C compiler or
Python headers are installed the build skips them with a warning, and brainycp.queue reads
every listing with its pure-Python paths, which give the same results
(tests/test_queue_eximscan.py, tests/test_queue_pfscan.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "brainycp._eximscan",
            ["brainycp/_eximscan.c"],
            depends=["brainycp/_scan.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
        Extension(
            "brainycp._pfscan",
            ["brainycp/_pfscan.c"],
            depends=["brainycp/_scan.h"],
            optional=True,
            extra_compile_args=["-O2"],
        ),
    ]
)
