//go:build linux && !amd64

package sandbox

// seccompArches has no table on this architecture yet: RUN gets
// Docker's capability set but no seccomp filter.
func seccompArches() []seccompArch { return nil }
