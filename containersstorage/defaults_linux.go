package containersstorage

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/layercommit/layercommit/internal/userns"
)

// Root's store, podman's defaults as root.
const (
	RootDefaultRoot    = "/var/lib/containers/storage"
	RootDefaultRunRoot = "/run/containers/storage"
)

// DefaultRoots are the store podman 4.3 uses when given no --root and no
// --runroot and no storage.conf names others: root's (RootDefaultRoot,
// RootDefaultRunRoot) for root, and for an ordinary user (also inside
// the user namespace layercommit re-executes in, where it is uid 0)
// rootless podman's: the graph root $XDG_DATA_HOME/containers/storage
// when XDG_DATA_HOME is absolute, else ~/.local/share/containers/storage
// (~ from $HOME, else the passwd entry); the run root
// $XDG_RUNTIME_DIR/containers, else /run/user/UID/containers when that
// dir is the user's with mode 0700 at least, else
// $TMPDIR/podman-run-UID/containers ($TMPDIR default /tmp): libpod's
// GetRuntimeDir, which podman sets before containers/storage picks its
// own /tmp/storage-run-UID. root is "" when the user has no home.
func DefaultRoots() (root, runRoot string) {
	if os.Geteuid() == 0 && userns.Inside() == "" {
		return RootDefaultRoot, RootDefaultRunRoot
	}
	uid := os.Getuid()
	if caller, ok := userns.Caller(); ok {
		uid = caller
	}
	return rootlessRoot(os.Getenv("XDG_DATA_HOME"), os.Getenv("HOME"), uid), rootlessRunRoot(os.Getenv("XDG_RUNTIME_DIR"), uid)
}

func rootlessRoot(xdg, home string, uid int) string {
	if filepath.IsAbs(xdg) {
		return filepath.Join(xdg, "containers", "storage")
	}
	if !filepath.IsAbs(home) {
		u, err := user.LookupId(strconv.Itoa(uid))
		if err != nil || !filepath.IsAbs(u.HomeDir) {
			return ""
		}
		home = u.HomeDir
	}
	return filepath.Join(home, ".local", "share", "containers", "storage")
}

func rootlessRunRoot(xdg string, uid int) string {
	if xdg != "" {
		return filepath.Join(xdg, "containers")
	}
	// The dir reads as owned by os.Geteuid() both outside the namespace
	// and inside it (where the caller is 0).
	d := filepath.Join("/run/user", strconv.Itoa(uid))
	if fi, err := os.Stat(d); err == nil && fi.IsDir() && fi.Mode().Perm()&0o700 == 0o700 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Geteuid() {
			return filepath.Join(d, "containers")
		}
	}
	tmp := os.Getenv("TMPDIR")
	if tmp == "" {
		tmp = "/tmp"
	}
	return filepath.Join(tmp, fmt.Sprintf("podman-run-%d", uid), "containers")
}
