package sandbox

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/userns"
)

// Rootless: the sandbox runs unchanged inside the user namespace that
// internal/userns makes for an ordinary user, where this process is
// uid 0 with every capability over the namespace's mounts; its mount,
// PID, UTS, IPC and network namespaces are owned by that user namespace.
// Two things differ there, both decided by the namespace the init runs
// in: device nodes cannot be made (mknod needs CAP_MKNOD in the initial
// namespace), so /dev's are the host's nodes bound over empty files, as
// rootless runc and podman do; and with a single-id map setgroups is
// denied, so the command keeps the init's groups.

// makeDevice makes the character device /dev/name at p: mknod where the
// kernel allows it, in a user namespace a bind mount of the host's node.
func makeDevice(p, name string, major, minor uint32) error {
	if !userns.RunningInUserNS() {
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(major, minor))); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", name, err)
		}
		return unix.Chmod(p, 0o666)
	}
	host := "/dev/" + name
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != major || unix.Minor(st.Rdev) != minor {
		return fmt.Errorf("creating /dev/%s in a user namespace: the host's %s is not the device %d:%d to bind", name, host, major, minor)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if err != nil {
		return fmt.Errorf("creating /dev/%s: %w", name, err)
	}
	f.Close()
	if err := unix.Mount(host, p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("binding the host's %s in a user namespace: %w", host, err)
	}
	return nil
}

// setgroupsDenied reports whether setgroups(2) is denied in this user
// namespace (a single-id map: /proc/self/setgroups reads "deny").
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}

// tunAvailable checks, in a user namespace, that slirp4netns will be
// able to open /dev/net/tun: the kernel checks the host's permissions of
// the node against the user itself, and some hosts make it 0600 (Debian
// and udev make it 0666).
func tunAvailable() error {
	if !userns.RunningInUserNS() {
		return nil
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("the default RUN network needs /dev/net/tun, which this user cannot open (%w): as root, chmod 0666 /dev/net/tun (udev's mode), or use --network none", err)
	}
	f.Close()
	return nil
}
