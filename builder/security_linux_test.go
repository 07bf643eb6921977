package builder

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/layercommit/layercommit/internal/oracle"
)

// TestBuildKitSecurity: what a RUN sees of its confinement is what
// BuildKit's RUN sees: the capability sets and seccomp mode in
// /proc/self/status, as root and as another user, and the system calls
// Docker's default profile refuses (unshare of a user namespace, which
// needs no capability; mount) failing the same way.
func TestBuildKitSecurity(t *testing.T) {
	k := oracle.NewBuildKit(t)
	const status = `grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status`
	df := "FROM {{BASE}}\n" +
		"RUN " + status + " > /status-root\n" +
		"RUN unshare -U true > /unshare 2>&1; echo $? >> /unshare\n" +
		"RUN mkdir /m && mount -t tmpfs t /m > /mount 2>&1; echo $? >> /mount; rmdir /m\n" +
		"RUN chown 1:1 /status-root && mknod /dev-null-copy c 1 3 && mkdir -m 1777 /out\n" +
		"USER nobody\n" +
		"RUN " + status + " > /out/status-nobody\n"
	ctx := writeContext(t, map[string]string{"Dockerfile": strings.ReplaceAll(df, "{{BASE}}", k.Base)})
	theirs := k.Build(t, ctx, oracle.BuildOpts{})
	ours := filepath.Join(t.TempDir(), "ours")
	if _, err := testBuild(t, Options{ContextDir: ctx, ResolvePlatform: registryResolver}, "oci:"+ours); err != nil {
		t.Fatalf("our build: %v", err)
	}
	a, b := imageTree(t, layoutImage(t, theirs)), imageTree(t, layoutImage(t, ours))
	for p, w := range map[string]string{
		"status-root":       `CapEff:\t00000000a80425fb\n`,
		"out/status-nobody": `CapEff:\t0000000000000000\nCapBnd:\t00000000a80425fb\n`,
		"unshare":           "Operation not permitted",
	} {
		if !strings.Contains(a[p], w) {
			t.Errorf("BuildKit's /%s is %q, want it to contain %q", p, a[p], w)
		}
	}
	for _, d := range treeDiff(a, b) {
		t.Error(d)
	}
}

// TestBuildInsecure: with --allow security.insecure, RUN
// --security=insecure has every capability and no seccomp filter (the
// shared BuildKit grants no insecure entitlement, so this is ours only);
// the next RUN is confined again.
func TestBuildInsecure(t *testing.T) {
	df := "FROM " + busyboxImage(t) + "\n" +
		"RUN --security=insecure unshare -U true > /insecure 2>&1; echo $? >> /insecure\n" +
		"RUN unshare -U true > /sandbox 2>&1; echo $? >> /sandbox\n"
	dest := filepath.Join(t.TempDir(), "out")
	o := Options{ContextDir: writeContext(t, map[string]string{"Dockerfile": df}), Allow: []string{EntitlementSecurityInsecure}}
	if _, err := testBuild(t, o, "oci:"+dest); err != nil {
		t.Fatalf("build: %v", err)
	}
	tree := imageTree(t, layoutImage(t, dest))
	for p, w := range map[string]string{"insecure": `content="0\n"`, "sandbox": `Operation not permitted\n1\n"`} {
		if !strings.Contains(tree[p], w) {
			t.Errorf("/%s is %q, want it to contain %q", p, tree[p], w)
		}
	}
}
