package sandbox

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

// TestSandboxSecurity: a RUN has Docker's default capability set (as
// root in all of permitted, effective and bounding; as another user only
// in bounding) and its seccomp filter refuses unshare (even a user
// namespace, which needs no capability), keyctl's relatives and
// mounting; insecure has every capability and no filter.
func TestSandboxSecurity(t *testing.T) {
	lower := busyboxRoot(t)
	const script = `grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|Seccomp):' /proc/self/status; ` +
		`unshare -U true 2>&1; echo "unshare=$?"; mkdir -p /m; mount -t tmpfs t /m 2>&1; echo "mount=$?"; ` +
		`(sleep 0 &); echo "fork=$?"`
	full := fullCaps(t)
	for _, tc := range []struct {
		name     string
		user     string
		insecure bool
		want     []string
	}{
		{"root", "", false, []string{"CapInh:\t0000000000000000\n", "CapPrm:\t00000000a80425fb\n", "CapEff:\t00000000a80425fb\n",
			"CapBnd:\t00000000a80425fb\n", "CapAmb:\t0000000000000000\n", "Seccomp:\t2\n",
			"Operation not permitted\nunshare=1\n", "mount: permission denied (are you root?)\nmount=1\n", "fork=0\n"}},
		{"nobody", "nobody", false, []string{"CapPrm:\t0000000000000000\n", "CapEff:\t0000000000000000\n",
			"CapBnd:\t00000000a80425fb\n", "Seccomp:\t2\n", "unshare=1\n", "fork=0\n"}},
		{"insecure", "", true, []string{"CapEff:\t" + full + "\n", "CapBnd:\t" + full + "\n", "Seccomp:\t0\n", "unshare=0\n", "mount=0\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := newSpec(t, []string{lower}, "/bin/sh", "-c", script)
			spec.User, spec.Insecure = tc.user, tc.insecure
			var out bytes.Buffer
			code, err := Run(context.Background(), spec, &out, &out)
			if err != nil || code != 0 {
				t.Fatalf("Run: %d %v\n%s", code, err, out.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// fullCaps is CapEff of this (root) test process: what insecure keeps.
func fullCaps(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:\t"); ok {
			return v
		}
	}
	t.Fatal("no CapEff in /proc/self/status")
	return ""
}
