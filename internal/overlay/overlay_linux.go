package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/layercommit/layercommit/internal/userns"
)

// Pinned are the options of every overlay Mount makes: no inode index,
// no directory redirects, no metadata-only copy up. With them, an upper
// dir holds only what diff can turn into a layer (plain copies, whiteouts,
// opaque markers).
const Pinned = "index=off,redirect_dir=off,metacopy=off"

// PinnedUser are the pinned options of a UserXattr mount: the kernel
// refuses userxattr with redirect_dir=off (it only takes nofollow, which
// neither creates redirects nor follows them), so an upper dir again
// holds only plain copies, whiteouts and opaque markers, the markers in
// user.overlay.*.
const PinnedUser = "index=off,redirect_dir=nofollow,metacopy=off,userxattr"

// pinned is Pinned (or PinnedUser) as key, value pairs, in the same
// order; a flag has no value.
var (
	pinned     = [][2]string{{"index", "off"}, {"redirect_dir", "off"}, {"metacopy", "off"}}
	pinnedUser = [][2]string{{"index", "off"}, {"redirect_dir", "nofollow"}, {"metacopy", "off"}, {"userxattr", ""}}
)

// pins are the pinned options of o, as a string and as pairs.
func (o *Options) pins() (string, [][2]string) {
	if o.UserXattr {
		return PinnedUser, pinnedUser
	}
	return Pinned, pinned
}

// ErrTooLong is returned when the kernel has no "lowerdir+" and the
// mount(2) options do not fit in one page even with short lower names.
var ErrTooLong = errors.New("overlay options too long for mount(2)")

// Options describe one overlay mount.
type Options struct {
	// Lowers are the lower dirs, top first. Without Upper the kernel
	// needs at least two.
	Lowers []string
	// Upper and Work are the upper and work dirs (on one file system),
	// both or neither; without them the overlay is read-only.
	Upper, Work string
	// ReadOnly mounts the overlay read-only even with an upper dir.
	ReadOnly bool
	// UserXattr mounts with userxattr (PinnedUser): overlay's own marks
	// go in user.overlay.* instead of trusted.overlay.*, as a mount made
	// in a user namespace (rootless, Linux 5.11+) must; lowers must
	// carry their opaque markers there too, and diff reads the upper dir
	// WithUserXattr.
	UserXattr bool
	// Extra are further key=value (or flag) options, given after the
	// pinned ones so that the kernel takes their value: for tests that
	// need the kernel to write redirects or metacopy files. Production
	// callers pass none.
	Extra []string
	// Volatile mounts with "volatile" where the kernel has it (Linux
	// 5.10, HaveVolatile): nothing syncs the upper dir's file system, not
	// the unmount (which otherwise syncs all of it) nor syncfs, so what
	// was written there is only in the page cache until writeback. The
	// caller must treat the upper dir as lost after a crash (statedir
	// trusts such a dir only in the boot that wrote it); the kernel
	// leaves work/incompat/volatile in the work dir and refuses to mount
	// it again. Without an upper dir it does nothing. With Fuse it is
	// fuse-overlayfs's fsync=0: fsync calls in the mount (dpkg's, say)
	// are not passed on to the upper dir's file system.
	Volatile bool
	// Fuse mounts with fuse-overlayfs (FuseProgram) instead of the
	// kernel's overlayfs: the fallback where the kernel refuses the mount
	// (a file system it does not take as an upper dir, such as another
	// overlay; a kernel without unprivileged overlayfs). UserXattr and
	// Extra do not apply; unmount it as any mount (umount2, as root of
	// the mount's namespace).
	Fuse bool
}

// forceLegacy makes Mount use mount(2) even where the new mount API
// would do (tests of the fallback).
var forceLegacy = false

// Mount mounts an overlay of o at target. It uses the new mount API
// (fsopen, fsconfig "lowerdir+" per lower, fsmount, move_mount) where the
// kernel takes "lowerdir+" (Linux 6.8); otherwise mount(2), with the
// lowers given by short relative names (as Docker's overlay2 l/ links)
// when the plain option string does not fit in a page. It never retries
// without the pinned options.
//
// In a user namespace (userns.RunningInUserNS) every mount is UserXattr:
// the kernel lets nothing there write trusted.* xattrs.
func Mount(target string, o Options) error {
	if userns.RunningInUserNS() {
		o.UserXattr = true
	}
	if err := o.absolute(&target); err != nil {
		return fmt.Errorf("mounting overlay at %s: %w", target, err)
	}
	if o.Fuse {
		if err := mountFuse(target, o); err != nil {
			return fmt.Errorf("mounting fuse-overlayfs at %s: %w", target, err)
		}
		return nil
	}
	if o.Volatile && o.Upper != "" && HaveVolatile() {
		o.Extra = append(o.Extra[:len(o.Extra):len(o.Extra)], "volatile")
	}
	var err error
	if !forceLegacy && haveLowerdirPlus() {
		err = mountNew(target, o)
	} else {
		err = mountLegacy(target, o)
	}
	if err != nil {
		if userns.RunningInUserNS() {
			return fmt.Errorf("mounting overlay at %s in a user namespace (unprivileged overlayfs needs Linux 5.11 or later; build falls back to fuse-overlayfs, else to copies, see --overlay): %w", target, err)
		}
		return fmt.Errorf("mounting overlay at %s: %w", target, err)
	}
	return nil
}

// absolute checks o and makes target and every dir absolute: the legacy
// short-name mount runs from another directory.
func (o *Options) absolute(target *string) error {
	if len(o.Lowers) == 0 {
		return errors.New("no lower dirs")
	}
	if (o.Upper == "") != (o.Work == "") {
		return errors.New("upper and work dirs go together")
	}
	if o.Upper == "" && len(o.Lowers) < 2 {
		return errors.New("an overlay without an upper dir needs at least two lower dirs")
	}
	abs := func(p *string) error {
		if *p == "" || strings.IndexByte(*p, 0) >= 0 {
			return fmt.Errorf("invalid dir %q", *p)
		}
		a, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = a
		return nil
	}
	o.Lowers = append([]string(nil), o.Lowers...)
	for i := range o.Lowers {
		if err := abs(&o.Lowers[i]); err != nil {
			return err
		}
	}
	if o.Upper != "" {
		if err := abs(&o.Upper); err != nil {
			return err
		}
		if err := abs(&o.Work); err != nil {
			return err
		}
	}
	return abs(target)
}

// escape escapes a dir for the kernel's overlay option parser, which
// splits options at unescaped ',' and lowers at unescaped ':' and drops
// the backslash before any other character.
func escape(p string) string {
	if !strings.ContainsAny(p, `\:,`) {
		return p
	}
	var b strings.Builder
	for _, c := range []byte(p) {
		if c == '\\' || c == ':' || c == ',' {
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

var lowerdirPlus struct {
	once sync.Once
	ok   bool
}

// haveLowerdirPlus reports whether the kernel takes "lowerdir+" through
// fsconfig, by building (not mounting) a throwaway overlay of two empty
// dirs once per process. Kernels before 6.5 accept any key into a legacy
// context and only fail when the overlay is created, so asking for the
// key alone would not tell.
func haveLowerdirPlus() bool {
	lowerdirPlus.once.Do(func() {
		dir, err := os.MkdirTemp("", "overlay-probe-")
		if err != nil {
			return
		}
		defer os.RemoveAll(dir)
		a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
		if os.Mkdir(a, 0o700) != nil || os.Mkdir(b, 0o700) != nil {
			return
		}
		fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
		if err != nil {
			return
		}
		defer unix.Close(fd)
		lowerdirPlus.ok = unix.FsconfigSetString(fd, "lowerdir+", a) == nil &&
			unix.FsconfigSetString(fd, "lowerdir+", b) == nil &&
			unix.FsconfigCreate(fd) == nil
	})
	return lowerdirPlus.ok
}

// HaveVolatile says whether the kernel takes overlay's "volatile"
// option (Linux 5.10 and later), from the running kernel's release.
var HaveVolatile = sync.OnceValue(func() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 10)
})

// kernelAtLeast says whether the release string rel ("6.1.0-18-amd64")
// is major.minor or later.
func kernelAtLeast(rel string, major, minor int) bool {
	f := strings.FieldsFunc(rel, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(f[0])
	mi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// mountNew mounts through the new mount API: no option string, so no
// length limit and no escaping of lowers ("lowerdir+" takes the path as
// is; upperdir and workdir are still unescaped by the kernel).
func mountNew(target string, o Options) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fd)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fd, key, value); err != nil {
			return fmt.Errorf("fsconfig %s=%s: %w%s", key, value, err, kernelLog(fd))
		}
		return nil
	}
	for _, l := range o.Lowers {
		if err := set("lowerdir+", l); err != nil {
			return err
		}
	}
	if o.Upper != "" {
		if err := set("upperdir", escape(o.Upper)); err != nil {
			return err
		}
		if err := set("workdir", escape(o.Work)); err != nil {
			return err
		}
	}
	pins, pairs := o.pins()
	for _, kv := range pairs {
		var err error
		if kv[1] == "" {
			err = unix.FsconfigSetFlag(fd, kv[0])
		} else {
			err = set(kv[0], kv[1])
		}
		if err != nil {
			return fmt.Errorf("the kernel refuses the pinned options %s: %w", pins, err)
		}
	}
	for _, e := range o.Extra {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			if err := unix.FsconfigSetFlag(fd, k); err != nil {
				return fmt.Errorf("fsconfig %s: %w%s", k, err, kernelLog(fd))
			}
			continue
		}
		if err := set(k, v); err != nil {
			return err
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("creating the overlay (%d lowers, %s): %w%s", len(o.Lowers), strings.Join(append([]string{pins}, o.Extra...), ","), err, kernelLog(fd))
	}
	attr := 0
	if o.ReadOnly {
		attr |= unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("fsmount: %w%s", err, kernelLog(fd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// kernelLog reads the messages the kernel queued on an fs context, for
// error messages ("overlay: failed to resolve '/x': -2").
func kernelLog(fd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (kernel: " + strings.Join(msgs, "; ") + ")"
}

// mountLegacy mounts through mount(2), whose options must fit in one
// page with the terminating NUL.
func mountLegacy(target string, o Options) error {
	var flags uintptr
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	lowers := make([]string, len(o.Lowers))
	for i, l := range o.Lowers {
		lowers[i] = escape(l)
	}
	data := legacyOptions(lowers, o)
	if len(data) < os.Getpagesize() {
		return mount(target, flags, data, len(lowers), &o)
	}
	// Too long: name the lowers by short symlinks in a temp dir and mount
	// from there with relative lowers. The kernel resolves each link when
	// it parses the options, so the dir goes when the mount is made.
	dir, err := os.MkdirTemp("", "overlay-l-")
	if err != nil {
		return fmt.Errorf("making short lower names: %w", err)
	}
	defer os.RemoveAll(dir)
	for i, l := range o.Lowers {
		lowers[i] = strconv.FormatInt(int64(i), 36)
		if err := os.Symlink(l, filepath.Join(dir, lowers[i])); err != nil {
			return fmt.Errorf("making short lower names: %w", err)
		}
	}
	data = legacyOptions(lowers, o)
	if len(data) >= os.Getpagesize() {
		return fmt.Errorf("%w: %d lowers take %d bytes with short names, the limit is %d", ErrTooLong, len(lowers), len(data), os.Getpagesize()-1)
	}
	return mountFrom(dir, target, flags, data, len(lowers), &o)
}

func legacyOptions(lowers []string, o Options) string {
	opts := "lowerdir=" + strings.Join(lowers, ":")
	if o.Upper != "" {
		opts += ",upperdir=" + escape(o.Upper) + ",workdir=" + escape(o.Work)
	}
	pins, _ := o.pins()
	opts += "," + pins
	if len(o.Extra) > 0 {
		opts += "," + strings.Join(o.Extra, ",")
	}
	return opts
}

func mount(target string, flags uintptr, data string, n int, o *Options) error {
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		pins, _ := o.pins()
		return fmt.Errorf("mount(2) with %d lowers and %s: %w", n, pins, err)
	}
	return nil
}

// mountFrom calls mount(2) with dir as the working directory of the
// calling thread only: the thread unshares its file-system attributes
// and is never handed back to the Go scheduler (it exits with the
// goroutine), so no other goroutine sees the changed directory.
func mountFrom(dir, target string, flags uintptr, data string, n int, o *Options) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare(CLONE_FS): %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", dir, err)
			return
		}
		errc <- mount(target, flags, data, n, o)
	}()
	return <-errc
}
