"""Test fake: hold one checkpoint save half-written, so a test can kill the job mid-save.

Put this directory on PYTHONPATH and set VLPRM_TEST_STALL_SAVE=NAME: the first `torch.save` to a
path containing NAME (e.g. "global_step4/zero_pp_rank_1") writes its file, touches
VLPRM_TEST_STALL_FLAG and then sleeps, so the checkpoint stays torn until the test kills it.
Does nothing without VLPRM_TEST_STALL_SAVE.
"""

import os
import sys

if os.environ.get("VLPRM_TEST_STALL_SAVE"):
    import builtins

    from time import sleep as _sleep

    _real_import = builtins.__import__

    def _patch_torch_save(torch) -> None:
        if getattr(torch.save, "_stall_patched", False):
            return
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if isinstance(f, (str, os.PathLike)) and os.environ["VLPRM_TEST_STALL_SAVE"] in os.fspath(f):
                with open(os.environ["VLPRM_TEST_STALL_FLAG"], "w") as flag:
                    flag.write(os.fspath(f))
                _sleep(600)

        save._stall_patched = True
        torch.save = save

    def _import(name, *args, **kwargs):
        module = _real_import(name, *args, **kwargs)
        torch = sys.modules.get("torch")
        if torch is not None and hasattr(torch, "save"):
            _patch_torch_save(torch)  # again if torch's own init re-binds torch.save later
        return module

    builtins.__import__ = _import
