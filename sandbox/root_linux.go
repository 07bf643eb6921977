package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/overlay"
)

// setupRoot mounts the overlay, the special file systems and s.Mounts,
// then pivots into the merged dir. It returns the mount points it made
// for s.Mounts and their targets (names in the root), for removeStubs.
func setupRoot(s *Spec) (stubs, targets []string, err error) {
	if err := setupFS(s); err != nil {
		return nil, nil, err
	}
	if stubs, targets, err = setupMounts(s, s.Merged); err != nil {
		return nil, nil, err
	}
	return stubs, targets, enterRoot(s)
}

// setupFS mounts the overlay and the special file systems.
func setupFS(s *Spec) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if s.Ready {
		// pivot_root needs a mount point: the root bound on itself (with
		// what is mounted below it, a fuse-overlayfs mount included).
		if err := unix.Mount(s.Merged, s.Merged, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("binding the root %s: %w", s.Merged, err)
		}
	} else if err := overlay.Mount(s.Merged, overlay.Options{Lowers: s.Lowers, Upper: s.Upper, Work: s.Work, Volatile: s.Volatile}); err != nil {
		return err
	}
	m := s.Merged
	for dst, src := range s.Binds {
		if err := unix.Mount(src, filepath.Join(m, dst), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("binding %s: %w", dst, err)
		}
	}
	const nsd = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := unix.Mount("proc", filepath.Join(m, "proc"), "proc", nsd, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	// sysfs read-only; not fatal (it needs a network namespace we own).
	_ = unix.Mount("sysfs", filepath.Join(m, "sys"), "sysfs", nsd|unix.MS_RDONLY, "")
	if err := setupDev(filepath.Join(m, "dev")); err != nil {
		return err
	}
	return setupPipes(filepath.Join(m, "dev", "pipes"), s.Pipes)
}

// enterRoot pivots into the merged dir and sets the hostname and lo up.
func enterRoot(s *Spec) error {
	if err := unix.Chdir(s.Merged); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root under the new one; the
	// detach then drops it, with no put_old directory in the layer.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	if s.network() != NetworkHost {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bringing up lo: %w", err)
		}
	}
	return nil
}

// setupDev mounts a tmpfs with the minimal device set docker gives.
func setupDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		if err := makeDevice(filepath.Join(dev, d.name), d.name, d.major, d.minor); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mounting /dev/pts: %w", err)
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	_ = unix.Mount("mqueue", filepath.Join(dev, "mqueue"), "mqueue", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// setupPipes mounts a tmpfs at dir holding files (mode 0755) and makes it
// read-only.
func setupPipes(dir string, files map[string]string) error {
	if len(files) == 0 {
		return nil
	}
	const flags = unix.MS_NOSUID | unix.MS_NODEV
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("making /dev/pipes: %w", err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", flags, "mode=755,size=16m"); err != nil {
		return fmt.Errorf("mounting /dev/pipes: %w", err)
	}
	for name, data := range files {
		if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
			return fmt.Errorf("bad /dev/pipes name %q", name)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			return fmt.Errorf("writing /dev/pipes/%s: %w", name, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY|flags, ""); err != nil {
		return fmt.Errorf("making /dev/pipes read-only: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo in the new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// InitLayer makes docker's init layer in dir (which need not exist): the
// mount points and stub files a container needs, to be the topmost lower
// (Spec.Lowers[0]), so that bind mounts and special file systems never
// create anything in the upper dir.
func InitLayer(dir string) error {
	for _, d := range []string{"dev/pts", "dev/shm", "proc", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, f := range []string{".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
			return err
		}
	}
	if err := os.Symlink("/proc/mounts", filepath.Join(dir, "etc/mtab")); err != nil && !os.IsExist(err) {
		return err
	}
	return nil
}

// EtcFiles is NetworkEtcFiles for NetworkHost (hostNet) or NetworkNone.
func EtcFiles(dir, hostname string, hostNet bool) (map[string]string, error) {
	if hostNet {
		return NetworkEtcFiles(dir, hostname, NetworkHost)
	}
	return NetworkEtcFiles(dir, hostname, NetworkNone)
}

// NetworkEtcFiles writes the files bound over /etc/hosts, /etc/hostname
// and /etc/resolv.conf for one command run with network into dir and
// returns them as Spec.Binds. With NetworkHost they are the host's hosts
// and resolv.conf; with NetworkDefault resolv.conf names slirp4netns's
// DNS forwarder and keeps the host's search and options lines; with
// NetworkNone it is empty.
func NetworkEtcFiles(dir, hostname, network string) (map[string]string, error) {
	hostNet := network == NetworkHost
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
	resolv := []byte{}
	if hostNet {
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			resolv = b
		}
		if b, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts = string(b)
		}
	} else {
		hosts += "127.0.0.1\t" + hostname + "\n"
	}
	if network == NetworkDefault {
		resolv = []byte(slirpResolvConf())
	}
	files := map[string][]byte{"hosts": []byte(hosts), "hostname": []byte(hostname + "\n"), "resolv.conf": resolv}
	binds := map[string]string{}
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		binds["etc/"+name] = p
	}
	return binds, nil
}
