"""Bundle writing (compiler side) and the manifest contract shared with the runtime.

`hcc.artifacts.manifest` is stdlib-only so that the runtime can import it on a machine without the compiler.
"""
