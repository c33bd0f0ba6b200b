"""vlprm: a toolkit for vision-language process reward models.

Importing the package has no side effects; heavy dependencies (torch, vllm) are imported
inside the modules that need them.
"""

__version__ = "0.1.0"
