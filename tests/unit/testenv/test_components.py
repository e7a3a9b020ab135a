from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from testenv import components as c

KUBERNETES_GO_MOD = """module k8s.io/kubernetes

go 1.26.0

require (
\tk8s.io/api v0.0.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/streaming => ./staging/src/k8s.io/streaming
\tgithub.com/some/fork => github.com/other/fork v1.2.3
)
"""


def test_staging_modules_are_the_replaces_pointing_into_staging() -> None:
    assert c.staging_modules(KUBERNETES_GO_MOD) == ["k8s.io/api", "k8s.io/streaming"]


def test_wrapper_go_mod_replaces_staging_modules_with_published_versions() -> None:
    text = c.wrapper_go_mod(c.KUBE_APISERVER, ["k8s.io/api", "k8s.io/streaming"])
    minor_patch = c.KUBERNETES_VERSION.split(".", 1)[1]
    assert f"\tk8s.io/api => k8s.io/api v0.{minor_patch}" in text
    assert f"\tk8s.io/streaming => k8s.io/streaming v0.{minor_patch}" in text
    assert text.startswith("module kubegate.local/testenv/kube-apiserver\n")


def test_wrapper_go_mod_points_a_patched_module_at_its_local_copy() -> None:
    text = c.wrapper_go_mod(c.KWOK, [])
    assert f"replace sigs.k8s.io/kwok => ./{c.LOCAL_MODULE_DIR}" in text
    assert "replace" not in c.wrapper_go_mod(c.ETCD, [])


def test_patch_applies_exactly_once() -> None:
    patch = c.SourcePatch("f.go", old="return err", new="return wrap(err)", why="test")
    assert c.apply_patch("a\nreturn err\n", patch) == "a\nreturn wrap(err)\n"


@pytest.mark.parametrize("text", ["nothing to patch", "return err\nreturn err\n"])
def test_patch_refuses_text_it_does_not_match_once(text: str) -> None:
    patch = c.SourcePatch("f.go", old="return err", new="x", why="because")
    with pytest.raises(ValueError, match="no longer applies"):
        c.apply_patch(text, patch)


def test_every_kwok_patch_applies_to_the_pinned_source_shape() -> None:
    # Each patch's `old` text must be unique and non-empty, or the build would fail.
    for patch in c.KWOK.patches:
        assert patch.old.strip() and patch.old != patch.new
        assert c.apply_patch(patch.old, patch) == patch.new


def test_fingerprint_changes_with_the_recipe() -> None:
    changed = replace(c.KWOK, patches=c.KWOK.patches[:1])
    assert changed.fingerprint() != c.KWOK.fingerprint()
    assert replace(c.ETCD, version="9.9.9").fingerprint() != c.ETCD.fingerprint()


def test_build_args_name_tags_output_and_package() -> None:
    args = c.KUBE_APISERVER.build_args(Path("/out/kube-apiserver"))
    assert args[:2] == ["go", "build"]
    assert args[args.index("-tags") + 1] == "selinux,notest,grpcnotrace"
    assert args[args.index("-o") + 1] == "/out/kube-apiserver"
    assert args[-1] == "k8s.io/kubernetes/cmd/kube-apiserver"


def test_kubernetes_binaries_are_stamped_with_their_release_version() -> None:
    date = "2026-07-22T18:07:38Z"
    major, minor, _ = c.KUBERNETES_VERSION.split(".")
    for component in (c.KUBE_APISERVER, c.KUBE_CONTROLLER_MANAGER):
        args = component.build_args(Path("/out/bin"), release_date=date)
        flags = args[args.index("-ldflags") + 1].split()
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            assert f"{package}.gitVersion=v{c.KUBERNETES_VERSION}" in flags
            assert f"{package}.gitMajor={major}" in flags
            assert f"{package}.gitMinor={minor}" in flags
            assert f"{package}.gitTreeState=archive" in flags
            assert f"{package}.buildDate={date}" in flags
        assert len(flags) == 2 * flags.count("-X")
    assert "-ldflags" not in c.ETCD.build_args(Path("/out/etcd"))


def test_stamping_the_version_changes_the_fingerprint_so_an_unstamped_build_is_rebuilt() -> None:
    unstamped = replace(c.KUBE_APISERVER, stamps_kubernetes_version=False)
    assert unstamped.fingerprint() != c.KUBE_APISERVER.fingerprint()
    bumped = replace(c.KUBE_APISERVER, version="1.36.4")
    assert "-X k8s.io/component-base/version.gitVersion=v1.36.4" in " ".join(
        bumped.build_args(Path("/out/bin"))
    )


def test_cache_dir_honours_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEGATE_TESTENV_CACHE", "/somewhere/else")
    assert c.default_cache_dir() == Path("/somewhere/else")
    monkeypatch.delenv("KUBEGATE_TESTENV_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert c.default_cache_dir() == Path("/xdg/kubegate-testenv")
