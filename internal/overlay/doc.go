// Package overlay is the one place that mounts overlayfs: the RUN
// sandbox's root, the builder's COPY/WORKDIR steps and COPY --from trees,
// and the test fixtures all call Mount.
//
// Every mount carries the pinned options index=off,redirect_dir=off,
// metacopy=off, so that an upper dir holds plain copies, whiteouts and
// opaque markers only (what diff reads); a kernel that refuses them is an
// error, never a reason to mount without them. Paths are passed to the
// kernel escaped as its option parser expects, and many lowers (images
// of more than a hundred layers) fit: through the new mount API
// (fsopen, one fsconfig "lowerdir+" per lower) where the kernel has it,
// else through mount(2) with short relative names when the plain option
// string would not fit in the one page mount(2) takes.
//
// In a user namespace (rootless, internal/userns) a mount takes
// Options.UserXattr: overlay's marks then live in user.overlay.* and the
// pinned options are PinnedUser (the kernel takes userxattr only with
// redirect_dir=nofollow).
//
// Options.Fuse mounts with fuse-overlayfs instead (fuse_linux.go), the
// fallback where the kernel refuses: its upper dirs mark whiteouts and
// opaque dirs their own ways, which diff reads WithFuse.
//
// Options.Volatile mounts with "volatile" (Linux 5.10; fuse-overlayfs:
// fsync=0): the unmount then does not sync the upper dir's whole file
// system, which for a build's steps is most of their time after a large
// COPY (the data is written back by the kernel meanwhile), and fsync in
// the mount does nothing; the builder's step and RUN roots use it, and
// statedir does not trust what they leave after a crash.
//
// Non-goals: unmounting (a plain umount2, fuse-overlayfs's too), data-only
// lowers.
package overlay
