// Package userns is the rootless entry of the CLI: when an ordinary user
// runs layercommit, Reexec runs the same command again inside a new user
// and mount namespace where the caller is uid and gid 0 and its
// subordinate ids (/etc/subuid, /etc/subgid) are 1..N, rootless podman's
// mapping, set up through the setuid helpers newuidmap and newgidmap
// (Debian's package uidmap). Inside, the command has every capability
// over what the namespace owns: it mounts overlays (userxattr), unpacks
// layers with their owners (container ids, which the kernel stores as the
// host's subordinate ids and gives back unmapped), and starts the RUN
// sandbox's nested namespaces. ModeSingle maps the caller alone to 0 (no
// helpers, no subordinate ids; every other id is unmapped, so a chown to
// one fails as it does in rootless podman without ranges). ModeHost
// enters none. RunningInUserNS tells the packages that must behave
// differently there (overlay's userxattr, statedir's unpacking, the
// sandbox's /dev) whatever made the namespace.
//
// Stage: the process entry, before any command runs (cmd/layercommit's
// main calls Main, then Reexec when Needed).
//
// Non-goals: joining an existing namespace (podman unshare's), mapping
// ranges other than the caller's own and its subordinate ids, cgroups.
package userns
