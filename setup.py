"""Build hook: the optional compiled queue readers (brainycp/queue/_*scan.c).

Everything else is in pyproject.toml. The extensions are optional: where no C compiler or
Python headers are installed the build skips them with a warning, and brainycp.queue reads
every listing with its Python readers, which give the same results about ten times slower
(tests/test_queue_readers.py runs both on the same listings).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            f"brainycp.queue.{name}",
            [f"brainycp/queue/{name}.c"],
            depends=["brainycp/queue/_scan.h"],
            optional=True,
            extra_compile_args=["-O2"],
        )
        for name in ("_eximscan", "_pfscan")
    ]
)
