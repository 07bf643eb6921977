// Package sandbox runs one RUN command the way docker build's container
// does, without a daemon: in new mount, PID, UTS, IPC and (unless the
// host's network is asked for) network namespaces, over an overlay of the
// image's layers (internal/overlay) with a fresh upper dir, after
// pivot_root, with a fresh /proc, a minimal /dev and /etc/hosts,
// /etc/hostname and /etc/resolv.conf bound in. USER is resolved against
// the image's own passwd and group files with runc's rules
// (github.com/moby/sys/user). The init of the PID namespace is this
// binary re-executed (Main) and reaps every process; when Run returns,
// nothing runs on or holds the upper dir. What the command changed is in
// the upper dir, for diff.
//
// A program that calls Run must call Main first thing in main (and test
// binaries in TestMain): there is no init() with side effects.
//
// The network is a mode (Spec.Network): none (only lo), host, or default,
// a private namespace with NAT through slirp4netns. The command gets
// Docker's default capability set and a seccomp filter like Docker's
// default profile (security_linux.go), unless Spec.Insecure.
//
// With Spec.Ready the caller has made the root (a fuse-overlayfs mount or
// a copied tree, build --overlay fuse|naive): the init binds it on itself
// instead of mounting an overlay.
//
// Rootless (rootless_linux.go): inside the user namespace internal/userns
// makes, the same namespaces are made there; /dev's nodes are the host's,
// bound, since mknod is refused.
//
// Non-goals: a user namespace of its own, cgroups and resource limits,
// AppArmor/SELinux, a TTY. RUN --mount's mounts are Spec.Mounts
// (see Mount); the mount points made for them are removed after the command.
package sandbox
