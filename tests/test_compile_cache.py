"""The compile cache: a persistent folder unless the user chose one, and a failing cached
compile retried once without the on-disk caches."""

from __future__ import annotations

import torch

from pipeline_lib import compile_cache


def test_the_cache_folder_is_persistent_unless_the_user_set_one(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache.use_persistent_cache() == str(tmp_path / "genfields" / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.use_persistent_cache() == str(tmp_path / "mine")


def test_a_failing_compile_is_retried_without_caches(tmp_path, monkeypatch, caplog):
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    calls, caches_off = [], []

    def fake_compile(module, **options):
        calls.append(options)
        caches_off.append(inductor_config.force_disable_caches)
        if len(calls) == 1:  # a stale or corrupt cache entry that fails when it is loaded
            return lambda x: (_ for _ in ()).throw(RuntimeError("corrupt cache entry"))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    fn = compile_cache.compiled(lambda x: x + 1, dynamic=False)
    assert fn(1) == 2 and fn(2) == 3
    assert calls == [{"dynamic": False}, {"dynamic": False}] and caches_off == [False, True]
    assert not inductor_config.force_disable_caches  # the retry's setting does not outlive it
    assert "corrupt cache entry" in caplog.text and "without the on-disk caches" in caplog.text
